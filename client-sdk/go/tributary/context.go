package tributary

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// The kinds of [ContextError]; match them with [errors.Is].
var (
	// ErrKeyExists: Insert of a key that is present.
	ErrKeyExists = errors.New("key exists")
	// ErrKeyMissing: Update or Get of a key that is absent.
	ErrKeyMissing = errors.New("key missing")
	// ErrWrongType: Get of a value that does not decode into the asked type.
	ErrWrongType = errors.New("wrong type")
	// ErrInvalidValue: a value that cannot be encoded as JSON.
	ErrInvalidValue = errors.New("invalid value")
)

// ContextError is a refused [Context] operation; it names the key. It
// matches its Kind and [ErrNonRetryable] with [errors.Is]: the same input
// would fail the same way again, so a task returning it is not retried.
type ContextError struct {
	// Key is the context key concerned.
	Key string
	// Kind is ErrKeyExists, ErrKeyMissing, ErrWrongType or ErrInvalidValue.
	Kind error
	// Type is the Go type asked for, for ErrWrongType and ErrInvalidValue.
	Type string
	// Err is the JSON error behind ErrWrongType and ErrInvalidValue.
	Err error
}

// Error says what went wrong with which key.
func (e *ContextError) Error() string {
	switch e.Kind {
	case ErrKeyExists:
		return fmt.Sprintf("context key %q already exists; use Update or Upsert to change it", e.Key)
	case ErrKeyMissing:
		return fmt.Sprintf("context key %q not found", e.Key)
	case ErrWrongType:
		return fmt.Sprintf("context key %q cannot be read as %s: %v", e.Key, e.Type, e.Err)
	default:
		return fmt.Sprintf("context key %q: a %s cannot be encoded as JSON: %v", e.Key, e.Type, e.Err)
	}
}

// Is matches the error's Kind and ErrNonRetryable.
func (e *ContextError) Is(target error) bool {
	return target == e.Kind || target == ErrNonRetryable
}

// Unwrap returns the JSON error, if any.
func (e *ContextError) Unwrap() error { return e.Err }

// Attempt describes the attempt a [Context] belongs to.
type Attempt struct {
	// RunID is the run's id.
	RunID string
	// WorkflowName is the run's workflow.
	WorkflowName string
	// TaskID is the task's id within the workflow.
	TaskID string
	// AttemptID is the attempt's id.
	AttemptID string
	// Number is 1 for the first attempt.
	Number uint32
	// Handler is the handler name the task was routed by.
	Handler string
	// Deadline is when the server times the attempt out (zero if unknown).
	Deadline time.Time
	// MapIndex is, for an instance of a mapped task (TaskID is the mapped
	// task's), its element's index, also in the input under MapIndexKey;
	// nil otherwise.
	MapIndex *uint32
}

// Context is a task's view of its run's context: a JSON object. A task
// starts from its input (the run's input plus the writes of its succeeded
// ancestors); its writes are recorded as a delta of top-level keys — set
// and removed — and only the delta travels back. Values are replaced whole,
// never merged.
//
// Insert never overwrites, Update never creates, Upsert does either. Values
// are kept as compact JSON text: written values are encoded at once (so
// later changes to a Go value do not leak in), read values are decoded by
// [Get] with UseNumber, so integers beyond 2^64 survive.
//
// A Context is not safe for concurrent use; a handler owns its Context.
type Context struct {
	values    map[string]json.RawMessage
	inputKeys map[string]struct{}
	set       map[string]struct{}
	removed   map[string]struct{}
	attempt   Attempt
}

// NewContext returns an empty context.
func NewContext() *Context {
	return newContext(map[string]json.RawMessage{})
}

// ContextFromJSON returns a context whose input is JSON text of an object;
// empty text is the empty object.
func ContextFromJSON(text string) (*Context, error) {
	values, err := parseObject(text)
	if err != nil {
		return nil, fmt.Errorf("invalid context: %w", err)
	}
	return newContext(values), nil
}

// ContextFromMap returns a context whose input is the JSON encoding of each
// value of values.
func ContextFromMap(values map[string]any) (*Context, error) {
	encoded := make(map[string]json.RawMessage, len(values))
	for key, value := range values {
		text, err := encodeValue(key, value)
		if err != nil {
			return nil, err
		}
		encoded[key] = text
	}
	return newContext(encoded), nil
}

func newContext(values map[string]json.RawMessage) *Context {
	inputKeys := make(map[string]struct{}, len(values))
	for key := range values {
		inputKeys[key] = struct{}{}
	}
	return &Context{
		values:    values,
		inputKeys: inputKeys,
		set:       map[string]struct{}{},
		removed:   map[string]struct{}{},
	}
}

func encodeValue(key string, value any) (json.RawMessage, error) {
	text, err := encodeJSON(value)
	if err != nil {
		return nil, &ContextError{Key: key, Kind: ErrInvalidValue, Type: fmt.Sprintf("%T", value), Err: err}
	}
	return text, nil
}

// Attempt describes the attempt this context belongs to (zero outside a
// worker).
func (c *Context) Attempt() Attempt { return c.attempt }

// Get reads key as a T, decoding with UseNumber (numbers read into `any`
// become [json.Number]). It fails with a [ContextError] of kind
// ErrKeyMissing when the key is absent and ErrWrongType, naming the key and
// the type, when the value does not decode.
//
//	products, err := tributary.Get[[]Product](tc, "products")
func Get[T any](c *Context, key string) (T, error) {
	text, ok := c.values[key]
	if !ok {
		var zero T
		return zero, &ContextError{Key: key, Kind: ErrKeyMissing}
	}
	value, err := Decode[T](text)
	if err != nil {
		return value, &ContextError{Key: key, Kind: ErrWrongType, Type: typeName[T](), Err: err}
	}
	return value, nil
}

// Raw returns key's value as JSON text, exactly as received or written.
func (c *Context) Raw(key string) (json.RawMessage, bool) {
	text, ok := c.values[key]
	return text, ok
}

// Contains reports whether key is present (in the input or written).
func (c *Context) Contains(key string) bool {
	_, ok := c.values[key]
	return ok
}

// Insert sets a new key; it fails with ErrKeyExists when key is present.
func (c *Context) Insert(key string, value any) error {
	if c.Contains(key) {
		return &ContextError{Key: key, Kind: ErrKeyExists}
	}
	return c.write(key, value)
}

// Update replaces a present key's value; it fails with ErrKeyMissing when
// key is absent.
func (c *Context) Update(key string, value any) error {
	if !c.Contains(key) {
		return &ContextError{Key: key, Kind: ErrKeyMissing}
	}
	return c.write(key, value)
}

// Upsert sets key whether or not it is present. It fails only when value
// cannot be encoded as JSON.
func (c *Context) Upsert(key string, value any) error {
	return c.write(key, value)
}

// Remove deletes key and returns its value; a key of the input is recorded
// as removed. Removing an absent key does nothing and returns false.
func (c *Context) Remove(key string) (json.RawMessage, bool) {
	text, ok := c.values[key]
	if !ok {
		return nil, false
	}
	delete(c.values, key)
	delete(c.set, key)
	if _, input := c.inputKeys[key]; input {
		c.removed[key] = struct{}{}
	}
	return text, true
}

func (c *Context) write(key string, value any) error {
	text, err := encodeValue(key, value)
	if err != nil {
		return err
	}
	// A set replaces the value whole, so an earlier removal is moot.
	delete(c.removed, key)
	c.set[key] = struct{}{}
	c.values[key] = text
	return nil
}

// Keys returns the present keys, sorted.
func (c *Context) Keys() []string {
	keys := make([]string, 0, len(c.values))
	for key := range c.values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}

// Len returns the number of present keys.
func (c *Context) Len() int { return len(c.values) }

// Data returns a copy of the context's values as JSON text.
func (c *Context) Data() map[string]json.RawMessage {
	data := make(map[string]json.RawMessage, len(c.values))
	for key, value := range c.values {
		data[key] = value
	}
	return data
}

// JSON returns the context as compact JSON text with sorted keys.
func (c *Context) JSON() string {
	text, _ := objectJSON(c.values)
	return text
}

// Delta returns what this task changed: the keys it set with their values,
// and the input keys it removed (and did not set again), sorted.
func (c *Context) Delta() (set map[string]json.RawMessage, removed []string) {
	set = make(map[string]json.RawMessage, len(c.set))
	for key := range c.set {
		set[key] = c.values[key]
	}
	removed = make([]string, 0, len(c.removed))
	for key := range c.removed {
		removed = append(removed, key)
	}
	sort.Strings(removed)
	return set, removed
}

// deltaJSON is the delta as Completed carries it.
func (c *Context) deltaJSON() (string, []string, error) {
	set, removed := c.Delta()
	text, err := objectJSON(set)
	return text, removed, err
}
