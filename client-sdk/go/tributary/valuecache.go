package tributary

import (
	"container/list"
	"encoding/json"
)

// DefaultValueCacheBytes is the value cache a worker keeps unless told
// otherwise: 64 MiB.
const DefaultValueCacheBytes = 64 << 20

// valueRef names one context value of a run: the attempt that wrote it
// (empty for the run's input) and its top-level key.
type valueRef struct {
	runID  string
	writer string
	key    string
}

type cachedValue struct {
	ref   valueRef
	value json.RawMessage
}

// valueCache keeps context values the worker produced or received, so the
// server can send references instead of values; it evicts the least
// recently used values beyond its byte budget. Only the worker's driver
// goroutine uses it.
type valueCache struct {
	capacity int64
	used     int64
	order    *list.List // front: most recently used
	entries  map[valueRef]*list.Element
	byRun    map[string]map[valueRef]struct{}
}

func newValueCache(capacity int64) *valueCache {
	return &valueCache{
		capacity: capacity,
		order:    list.New(),
		entries:  map[valueRef]*list.Element{},
		byRun:    map[string]map[valueRef]struct{}{},
	}
}

// size is what one value counts against the budget: its text and its whole
// name. The server counts only the text, so the worker never holds more
// than the server assumes it does (conformance/SPEC.md, reference_fetch).
func (ref valueRef) size(value json.RawMessage) int64 {
	return int64(len(value) + len(ref.runID) + len(ref.writer) + len(ref.key))
}

// put keeps value under ref; a value larger than the whole budget is not
// kept (it will be fetched when referenced).
func (c *valueCache) put(ref valueRef, value json.RawMessage) {
	if element, ok := c.entries[ref]; ok {
		c.removeElement(element)
	}
	size := ref.size(value)
	if size > c.capacity {
		return
	}
	for c.used+size > c.capacity {
		c.removeElement(c.order.Back())
	}
	c.entries[ref] = c.order.PushFront(&cachedValue{ref: ref, value: value})
	c.used += size
	run := c.byRun[ref.runID]
	if run == nil {
		run = map[valueRef]struct{}{}
		c.byRun[ref.runID] = run
	}
	run[ref] = struct{}{}
}

// get returns the value under ref and marks it recently used.
func (c *valueCache) get(ref valueRef) (json.RawMessage, bool) {
	element, ok := c.entries[ref]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(element)
	return element.Value.(*cachedValue).value, true
}

// forgetRun drops every value of a run.
func (c *valueCache) forgetRun(runID string) {
	for ref := range c.byRun[runID] {
		c.removeElement(c.entries[ref])
	}
	delete(c.byRun, runID)
}

// clear forgets everything (on reconnect: the server's view starts anew).
func (c *valueCache) clear() {
	c.order.Init()
	c.entries = map[valueRef]*list.Element{}
	c.byRun = map[string]map[valueRef]struct{}{}
	c.used = 0
}

func (c *valueCache) removeElement(element *list.Element) {
	entry := element.Value.(*cachedValue)
	c.order.Remove(element)
	delete(c.entries, entry.ref)
	if run := c.byRun[entry.ref.runID]; run != nil {
		delete(run, entry.ref)
		if len(run) == 0 {
			delete(c.byRun, entry.ref.runID)
		}
	}
	c.used -= entry.ref.size(entry.value)
}

// len is the number of values kept.
func (c *valueCache) len() int { return len(c.entries) }
