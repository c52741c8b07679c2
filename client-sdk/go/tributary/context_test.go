package tributary

import (
	"bytes"
	stdctx "context"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
)

func bytesReader(text []byte) *bytes.Reader { return bytes.NewReader(text) }

func TestGetNamesTheKeyAndTheType(t *testing.T) {
	tc, err := ContextFromJSON(`{"n": "seven", "list": [1, 2]}`)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Get[int64](tc, "absent")
	if !errors.Is(err, ErrKeyMissing) || err.Error() != `context key "absent" not found` {
		t.Fatalf("missing: %v", err)
	}
	_, err = Get[int64](tc, "n")
	var contextError *ContextError
	if !errors.As(err, &contextError) || contextError.Key != "n" || contextError.Type != "int64" {
		t.Fatalf("wrong type: %#v", err)
	}
	if !strings.HasPrefix(err.Error(), `context key "n" cannot be read as int64: `) {
		t.Fatalf("message: %v", err)
	}
	if !errors.Is(err, ErrWrongType) || !errors.Is(err, ErrNonRetryable) {
		t.Fatalf("a wrong type must be non-retryable: %v", err)
	}
	list, err := Get[[]uint8](tc, "list")
	if err != nil || len(list) != 2 || list[1] != 2 {
		t.Fatalf("list = %v, %v", list, err)
	}
}

func TestGetDecodesStructs(t *testing.T) {
	type Product struct {
		ID   uint32 `json:"id"`
		Name string `json:"name"`
	}
	tc, _ := ContextFromJSON(`{"p": [{"id": 1, "name": "x"}]}`)
	products, err := Get[[]Product](tc, "p")
	if err != nil || len(products) != 1 || products[0] != (Product{1, "x"}) {
		t.Fatalf("products = %v, %v", products, err)
	}
	_, err = Get[Product](tc, "p")
	if err == nil || !strings.Contains(err.Error(), "tributary.Product") {
		t.Fatalf("want an error naming the type, got %v", err)
	}
}

func TestIntegersBeyondTwoToThe64AreExact(t *testing.T) {
	text := `{"big":9007199254740993,"huge":18446744073709551617,"neg":-340282366920938463463374607431768211457}`
	tc, err := ContextFromJSON(text)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := Get[uint64](tc, "big"); err != nil || n != 9007199254740993 {
		t.Fatalf("big = %d, %v", n, err)
	}
	if _, err := Get[uint64](tc, "huge"); !errors.Is(err, ErrWrongType) {
		t.Fatalf("2^64+1 must not fit a uint64: %v", err)
	}
	huge, err := Get[*big.Int](tc, "huge")
	if err != nil || huge.String() != "18446744073709551617" {
		t.Fatalf("huge = %v, %v", huge, err)
	}
	anyValue, err := Get[any](tc, "neg")
	if err != nil || anyValue.(json.Number).String() != "-340282366920938463463374607431768211457" {
		t.Fatalf("neg = %v, %v", anyValue, err)
	}
	if err := tc.Upsert("copy", anyValue); err != nil {
		t.Fatal(err)
	}
	if err := tc.Upsert("doubled", new(big.Int).Mul(huge, big.NewInt(2))); err != nil {
		t.Fatal(err)
	}
	set, _, _ := tc.deltaJSON()
	if set != `{"copy":-340282366920938463463374607431768211457,"doubled":36893488147419103234}` {
		t.Fatalf("set = %s", set)
	}
	if tc.JSON() != `{"big":9007199254740993,"copy":-340282366920938463463374607431768211457,"doubled":36893488147419103234,"huge":18446744073709551617,"neg":-340282366920938463463374607431768211457}` {
		t.Fatalf("json = %s", tc.JSON())
	}
}

func TestWritesAreCopiedAtOnce(t *testing.T) {
	tc := NewContext()
	values := []int{1, 2}
	if err := tc.Insert("v", values); err != nil {
		t.Fatal(err)
	}
	values[0] = 99
	if raw, _ := tc.Raw("v"); string(raw) != "[1,2]" {
		t.Fatalf("v = %s", raw)
	}
	if err := tc.Insert("bad", make(chan int)); !errors.Is(err, ErrInvalidValue) || !strings.Contains(err.Error(), `"bad"`) {
		t.Fatalf("unencodable value: %v", err)
	}
	if err := tc.Insert("html", "<a&b>"); err != nil {
		t.Fatal(err)
	}
	if raw, _ := tc.Raw("html"); string(raw) != `"<a&b>"` {
		t.Fatalf("text is escaped: %s", raw)
	}
}

func TestRemoveRecordsOnlyInputKeys(t *testing.T) {
	tc, _ := ContextFromJSON(`{"a": 1, "b": 2}`)
	if err := tc.Insert("c", 3); err != nil {
		t.Fatal(err)
	}
	if raw, ok := tc.Remove("c"); !ok || string(raw) != "3" {
		t.Fatalf("remove c = %s %v", raw, ok)
	}
	if _, ok := tc.Remove("a"); !ok {
		t.Fatal("a was present")
	}
	if _, ok := tc.Remove("missing"); ok {
		t.Fatal("missing was absent")
	}
	set, removed := tc.Delta()
	if len(set) != 0 || len(removed) != 1 || removed[0] != "a" {
		t.Fatalf("delta = %v %v", set, removed)
	}
	if tc.Contains("a") || !tc.Contains("b") || tc.Len() != 1 {
		t.Fatalf("keys = %v", tc.Keys())
	}
	if err := tc.Update("a", 5); !errors.Is(err, ErrKeyMissing) {
		t.Fatalf("update of a removed key: %v", err)
	}
}

func TestOnlyObjectsAreContexts(t *testing.T) {
	for _, text := range []string{"[]", "1", "{", `{"a":1} x`} {
		if _, err := ContextFromJSON(text); err == nil {
			t.Errorf("%q was accepted", text)
		}
	}
	tc, err := ContextFromJSON("")
	if err != nil || tc.Len() != 0 {
		t.Fatalf("empty text: %v", err)
	}
	long := "[" + strings.Repeat("1,", 10_000) + "1]"
	_, err = ContextFromJSON(long)
	if err == nil || len(err.Error()) > 200 {
		t.Fatalf("the error must not echo the input: %d bytes", len(err.Error()))
	}
}

func TestNonRetryableMatchesWithErrorsIsAndAs(t *testing.T) {
	cause := errors.New("bad input")
	err := NonRetryable(cause)
	if !errors.Is(err, ErrNonRetryable) || !errors.Is(err, cause) || IsRetryable(err) {
		t.Fatalf("NonRetryable: %v", err)
	}
	var wrapper *NonRetryableError
	wrapped := errors.Join(errors.New("context"), NonRetryablef("fail_fatal: %w", cause))
	if !errors.As(wrapped, &wrapper) || !errors.Is(wrapped, ErrNonRetryable) || wrapper.Error() != "fail_fatal: bad input" {
		t.Fatalf("wrapped: %v", wrapped)
	}
	if NonRetryable(nil) != nil || !IsRetryable(errors.New("x")) {
		t.Fatal("plain errors are retryable")
	}
}

func TestTaskDefaultsAndHandlerNames(t *testing.T) {
	workflow := NewWorkflow("w",
		Task{ID: "a", Run: func(_ stdctx.Context, _ *Context) error { return nil }},
		Task{ID: "b", Dependencies: []string{"a"}, RetryAttempts: 3, RetryDelayMS: 500, NoRetryJitter: true, TimeoutMS: 100, TriggerRule: "all_done", Handler: "x.y", Run: func(_ stdctx.Context, _ *Context) error { return nil }},
		Task{ID: "c", NoRetryDelay: true, Run: func(_ stdctx.Context, _ *Context) error { return nil }},
	)
	if err := workflow.Validate(); err != nil {
		t.Fatal(err)
	}
	definition := workflow.Definition()
	a, b, c := definition.Tasks[0], definition.Tasks[1], definition.Tasks[2]
	if a.RetryAttempts != nil || a.RetryDelayMS != nil || a.RetryJitter != nil || a.TimeoutMS != nil {
		t.Fatalf("zero values must be unset: %+v", a)
	}
	if *b.RetryAttempts != 3 || *b.RetryDelayMS != 500 || *b.RetryJitter || *b.TimeoutMS != 100 || b.TriggerRule != "all_done" {
		t.Fatalf("b = %+v", b)
	}
	if *c.RetryDelayMS != 0 {
		t.Fatalf("c = %+v", c)
	}
	handlers := workflow.Handlers()
	if _, ok := handlers["w.a"]; !ok {
		t.Fatalf("handlers = %v", handlers)
	}
	if _, ok := handlers["x.y"]; !ok {
		t.Fatalf("handlers = %v", handlers)
	}
	bad := NewWorkflow("w", Task{ID: "a"})
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), `"a" has no Run`) {
		t.Fatalf("a task without code: %v", err)
	}
	invalid := NewWorkflow("w", Task{ID: "a", RetryAttempts: -1, Run: func(_ stdctx.Context, _ *Context) error { return nil }})
	if err := invalid.Validate(); err == nil || err.Error() != `task "a": retry_attempts must be between 0 and 100, got -1` {
		t.Fatalf("negative retries: %v", err)
	}
}

func TestRequiredLabelsReachTheWire(t *testing.T) {
	labels := map[string]string{"gpu": "true", "region": "eu"}
	workflow := NewWorkflow("w",
		Task{ID: "train", RequiredLabels: labels, Run: func(_ stdctx.Context, _ *Context) error { return nil }},
		Task{ID: "plain", Run: func(_ stdctx.Context, _ *Context) error { return nil }},
	)
	if err := workflow.Validate(); err != nil {
		t.Fatal(err)
	}
	definition := workflow.Definition()
	labels["gpu"] = "changed later"
	train, plain := definition.Tasks[0], definition.Tasks[1]
	if train.RequiredLabels["gpu"] != "true" || train.RequiredLabels["region"] != "eu" || plain.RequiredLabels != nil {
		t.Fatalf("train = %+v, plain = %+v", train, plain)
	}
	wire := train.toProto()
	if wire.GetRequiredLabels()["region"] != "eu" || taskDefinitionFromProto(wire).RequiredLabels["gpu"] != "true" {
		t.Fatalf("wire = %v", wire)
	}
	bad := NewWorkflow("w", Task{ID: "a", RequiredLabels: map[string]string{"": "x"}, Run: func(_ stdctx.Context, _ *Context) error { return nil }})
	if err := bad.Validate(); err == nil || err.Error() != `task "a": required_labels has an empty key` {
		t.Fatalf("an empty key: %v", err)
	}
}

func TestMaxInFlightReachesTheWire(t *testing.T) {
	workflow := NewWorkflow("w",
		Task{ID: "charge", MaxInFlight: 5, Run: func(_ stdctx.Context, _ *Context) error { return nil }},
		Task{ID: "plain", Run: func(_ stdctx.Context, _ *Context) error { return nil }},
	)
	if err := workflow.Validate(); err != nil {
		t.Fatal(err)
	}
	definition := workflow.Definition()
	charge, plain := definition.Tasks[0], definition.Tasks[1]
	if charge.MaxInFlight == nil || *charge.MaxInFlight != 5 || plain.MaxInFlight != nil {
		t.Fatalf("charge = %+v, plain = %+v", charge, plain)
	}
	wire := charge.toProto()
	if wire.MaxInFlight == nil || wire.GetMaxInFlight() != 5 || plain.toProto().MaxInFlight != nil {
		t.Fatalf("wire = %v", wire)
	}
	if back := taskDefinitionFromProto(wire).MaxInFlight; back == nil || *back != 5 {
		t.Fatalf("back from the wire: %v", back)
	}
	bad := NewWorkflow("w", Task{ID: "a", MaxInFlight: -3, Run: func(_ stdctx.Context, _ *Context) error { return nil }})
	if err := bad.Validate(); err == nil || err.Error() != `task "a": max_in_flight must be between 1 and 10000, got -3` {
		t.Fatalf("a negative limit: %v", err)
	}
}
