package tributary

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"
)

func vectorPath(t *testing.T, parts ...string) string {
	t.Helper()
	return filepath.Join(append([]string{"..", "..", ".."}, parts...)...)
}

func readVectors[T any](t *testing.T, parts ...string) T {
	t.Helper()
	text, err := os.ReadFile(vectorPath(t, parts...))
	if err != nil {
		t.Fatalf("read vectors: %v", err)
	}
	value, err := Decode[T](text)
	if err != nil {
		t.Fatalf("parse vectors %s: %v", filepath.Join(parts...), err)
	}
	return value
}

// sameJSON compares two JSON texts as values with exact numbers.
func sameJSON(t *testing.T, got, want []byte) bool {
	t.Helper()
	a, err := Decode[any](got)
	if err != nil {
		t.Fatalf("invalid JSON %s: %v", got, err)
	}
	b, err := Decode[any](want)
	if err != nil {
		t.Fatalf("invalid JSON %s: %v", want, err)
	}
	return reflect.DeepEqual(a, b)
}

func TestContextOpsVectors(t *testing.T) {
	type op struct {
		Op    string          `json:"op"`
		Key   string          `json:"key"`
		Value json.RawMessage `json:"value"`
	}
	type testCase struct {
		Name    string                     `json:"name"`
		Input   map[string]json.RawMessage `json:"input"`
		Ops     []op                       `json:"ops"`
		Data    json.RawMessage            `json:"data"`
		Set     json.RawMessage            `json:"set"`
		Removed []string                   `json:"removed"`
		Errors  []*string                  `json:"errors"`
	}
	vectors := readVectors[struct{ Cases []testCase }](t, "tests", "vectors", "context_ops.json")
	if len(vectors.Cases) < 10 {
		t.Fatalf("expected the shared cases, got %d", len(vectors.Cases))
	}
	for _, c := range vectors.Cases {
		t.Run(c.Name, func(t *testing.T) {
			tc := newContext(c.Input)
			for index, op := range c.Ops {
				var err error
				switch op.Op {
				case "insert":
					err = tc.Insert(op.Key, op.Value)
				case "update":
					err = tc.Update(op.Key, op.Value)
				case "upsert":
					err = tc.Upsert(op.Key, op.Value)
				case "remove":
					tc.Remove(op.Key)
				default:
					t.Fatalf("unknown op %q", op.Op)
				}
				want := c.Errors[index]
				switch {
				case want == nil && err != nil:
					t.Fatalf("op %d: unexpected error %v", index, err)
				case want != nil && *want == "key_exists" && !errors.Is(err, ErrKeyExists):
					t.Fatalf("op %d: want key_exists, got %v", index, err)
				case want != nil && *want == "key_missing" && !errors.Is(err, ErrKeyMissing):
					t.Fatalf("op %d: want key_missing, got %v", index, err)
				}
			}
			if got := tc.JSON(); !sameJSON(t, []byte(got), c.Data) {
				t.Errorf("data = %s, want %s", got, c.Data)
			}
			set, removed, err := tc.deltaJSON()
			if err != nil {
				t.Fatal(err)
			}
			if !sameJSON(t, []byte(set), c.Set) {
				t.Errorf("set = %s, want %s", set, c.Set)
			}
			if !reflect.DeepEqual(append([]string{}, removed...), append([]string{}, c.Removed...)) {
				t.Errorf("removed = %v, want %v", removed, c.Removed)
			}
		})
	}
}

// TestContextVectors applies each case's deltas in canonical position
// order, as the server does, through a Context's operations.
func TestContextVectors(t *testing.T) {
	type delta struct {
		Task     string                     `json:"task"`
		Position int                        `json:"position"`
		Set      map[string]json.RawMessage `json:"set"`
		Removed  []string                   `json:"removed"`
	}
	type testCase struct {
		Name         string                     `json:"name"`
		Input        map[string]json.RawMessage `json:"input"`
		Deltas       []delta                    `json:"deltas"`
		Expected     json.RawMessage            `json:"expected"`
		ExpectedJSON *string                    `json:"expected_json"`
	}
	vectors := readVectors[struct{ Cases []testCase }](t, "tests", "vectors", "context.json")
	for _, c := range vectors.Cases {
		t.Run(c.Name, func(t *testing.T) {
			tc := newContext(c.Input)
			sort.Slice(c.Deltas, func(i, j int) bool { return c.Deltas[i].Position < c.Deltas[j].Position })
			for _, d := range c.Deltas {
				for _, key := range d.Removed {
					tc.Remove(key)
				}
				for key, value := range d.Set {
					if err := tc.Upsert(key, value); err != nil {
						t.Fatal(err)
					}
				}
			}
			if got := tc.JSON(); !sameJSON(t, []byte(got), c.Expected) {
				t.Errorf("context = %s, want %s", got, c.Expected)
			}
			if c.ExpectedJSON != nil && tc.JSON() != *c.ExpectedJSON {
				t.Errorf("canonical text = %s, want %s", tc.JSON(), *c.ExpectedJSON)
			}
		})
	}
}

func TestValidationVectors(t *testing.T) {
	type testCase struct {
		Name       string          `json:"name"`
		Definition json.RawMessage `json:"definition"`
		Error      *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	vectors := readVectors[struct{ Cases []testCase }](t, "tests", "vectors", "validation.json")
	if len(vectors.Cases) < 20 {
		t.Fatalf("expected the shared cases, got %d", len(vectors.Cases))
	}
	for _, c := range vectors.Cases {
		t.Run(c.Name, func(t *testing.T) {
			decoder := json.NewDecoder(bytesReader(c.Definition))
			decoder.DisallowUnknownFields()
			var definition WorkflowDefinition
			if err := decoder.Decode(&definition); err != nil {
				t.Fatalf("definition: %v", err)
			}
			err := definition.Validate()
			switch {
			case c.Error == nil && err != nil:
				t.Fatalf("want valid, got %v", err)
			case c.Error != nil && err == nil:
				t.Fatalf("want %q, got valid", c.Error.Message)
			case c.Error != nil && err.Error() != c.Error.Message:
				t.Fatalf("message = %q, want %q", err.Error(), c.Error.Message)
			}
		})
	}
}

// TestConformanceValuesSurvive round-trips every value of
// conformance/values.json through a Context: written, encoded as a delta,
// read back as a new input, and read with Get[any].
func TestConformanceValuesSurvive(t *testing.T) {
	vectors := readVectors[struct {
		Values []json.RawMessage `json:"values"`
	}](t, "conformance", "values.json")
	for index, value := range vectors.Values {
		tc := NewContext()
		if err := tc.Insert("v", value); err != nil {
			t.Fatal(err)
		}
		set, _, err := tc.deltaJSON()
		if err != nil {
			t.Fatal(err)
		}
		next, err := ContextFromJSON(set)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := next.Raw("v")
		if !sameJSON(t, raw, value) {
			t.Errorf("value %d: %s came back as %s", index, value, raw)
		}
		decoded, err := Get[any](next, "v")
		if err != nil {
			t.Fatal(err)
		}
		again, err := encodeJSON(decoded)
		if err != nil {
			t.Fatal(err)
		}
		if !sameJSON(t, again, value) {
			t.Errorf("value %d: %s decoded and encoded as %s", index, value, again)
		}
	}
}
