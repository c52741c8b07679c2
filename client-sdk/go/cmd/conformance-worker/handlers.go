package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

type handler = func(context.Context, *tributary.Context, *eventLog) error

func handlers() map[string]handler {
	return map[string]handler{
		"echo":        echo,
		"fail_once":   failOnce,
		"fail_always": failAlways,
		"fail_fatal":  failFatal,
		"throw":       throw,
		"sleep":       sleep,
		"spin":        spin,
		"wait_cancel": waitCancel,
		"big":         big,
		"measure":     measure,
		"vector":      vector,
		"map_echo":    mapEcho,
	}
}

func echo(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	value, ok := tc.Raw("echo_in")
	if !ok {
		return tributary.NonRetryablef(`echo: the input has no key "echo_in"`)
	}
	return tc.Upsert("echo_out", value)
}

func mapEcho(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	element, ok := tc.Raw(tributary.MapElementKey)
	if !ok {
		return tributary.NonRetryablef(`map_echo: the input has no key "map_element"`)
	}
	var inputIndex *uint32
	if raw, ok := tc.Raw(tributary.MapIndexKey); ok {
		var index uint32
		if err := json.Unmarshal(raw, &index); err == nil {
			inputIndex = &index
		}
	}
	assignedIndex := tc.Attempt().MapIndex
	if inputIndex == nil || assignedIndex == nil || *inputIndex != *assignedIndex {
		return tributary.NonRetryablef("map_echo: the input's map_index is %s, the attempt's %s",
			describeIndex(inputIndex), describeIndex(assignedIndex))
	}
	return tc.Upsert("map_echo_out", element)
}

func describeIndex(index *uint32) string {
	if index == nil {
		return "missing"
	}
	return strconv.FormatUint(uint64(*index), 10)
}

func failOnce(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	number := tc.Attempt().Number
	if number == 1 {
		return errors.New("fail_once: attempt 1")
	}
	return tc.Upsert("fail_once_attempt", number)
}

func failAlways(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	return fmt.Errorf("fail_always: attempt %d", tc.Attempt().Number)
}

func failFatal(context.Context, *tributary.Context, *eventLog) error {
	return tributary.NonRetryablef("fail_fatal")
}

func throw(context.Context, *tributary.Context, *eventLog) error {
	panic("throw: boom")
}

func sleep(ctx context.Context, tc *tributary.Context, _ *eventLog) error {
	ms, err := tributary.Get[int64](tc, "sleep_ms")
	if err != nil {
		return err
	}
	timer := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
		return tc.Upsert("slept_ms", ms)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// spin busy-loops without yielding: the Go runtime preempts it, so the
// worker's heartbeats go on.
func spin(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	ms, err := tributary.Get[int64](tc, "spin_ms")
	if err != nil {
		return err
	}
	end := time.Now().Add(time.Duration(ms) * time.Millisecond)
	var spins uint64
	for time.Now().Before(end) {
		spins++
	}
	_ = spins
	return tc.Upsert("spun_ms", ms)
}

func waitCancel(ctx context.Context, tc *tributary.Context, log *eventLog) error {
	timer := time.NewTimer(120 * time.Second)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		log.write("cancelled", "conformance.wait_cancel", tc.Attempt().AttemptID)
		return context.Cause(ctx)
	case <-timer.C:
		return errors.New("wait_cancel: never cancelled")
	}
}

func big(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	size, err := tributary.Get[int](tc, "big_bytes")
	if err != nil {
		return err
	}
	if size < 0 {
		return tributary.NonRetryablef("big: big_bytes must not be negative, got %d", size)
	}
	return tc.Upsert("big", strings.Repeat("x", size))
}

func measure(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	measured := map[string]int{}
	for _, key := range tc.Keys() {
		if key == "echo_in" {
			continue
		}
		value, _ := tc.Raw(key)
		var compact bytes.Buffer
		if err := json.Compact(&compact, value); err != nil {
			return tributary.NonRetryablef("measure: %q is not JSON: %w", key, err)
		}
		measured[key] = compact.Len()
	}
	return tc.Upsert("measured", measured)
}

type vectorOp struct {
	Op    string          `json:"op"`
	Key   string          `json:"key"`
	Value json.RawMessage `json:"value"`
}

func vector(_ context.Context, tc *tributary.Context, _ *eventLog) error {
	input, err := tributary.Get[map[string]json.RawMessage](tc, "vector_input")
	if err != nil {
		return err
	}
	ops, err := tributary.Get[[]vectorOp](tc, "vector_ops")
	if err != nil {
		return err
	}
	inputText, err := json.Marshal(input)
	if err != nil {
		return err
	}
	subject, err := tributary.ContextFromJSON(string(inputText))
	if err != nil {
		return tributary.NonRetryable(err)
	}
	errorKinds := make([]any, len(ops))
	for index, op := range ops {
		var opErr error
		switch op.Op {
		case "insert":
			opErr = subject.Insert(op.Key, op.Value)
		case "update":
			opErr = subject.Update(op.Key, op.Value)
		case "upsert":
			opErr = subject.Upsert(op.Key, op.Value)
		case "remove":
			subject.Remove(op.Key)
		default:
			return tributary.NonRetryablef("vector: unknown op %q", op.Op)
		}
		switch {
		case opErr == nil:
			errorKinds[index] = nil
		case errors.Is(opErr, tributary.ErrKeyExists):
			errorKinds[index] = "key_exists"
		case errors.Is(opErr, tributary.ErrKeyMissing):
			errorKinds[index] = "key_missing"
		default:
			return opErr
		}
	}
	set, removed := subject.Delta()
	sort.Strings(removed)
	return tc.Upsert("vector_result", map[string]any{
		"data":    subject.Data(),
		"set":     set,
		"removed": removed,
		"errors":  errorKinds,
	})
}
