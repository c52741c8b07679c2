package tributary_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

func ExampleGet() {
	tc, _ := tributary.ContextFromJSON(`{"products": [{"id": 1}, {"id": 2}], "big": 18446744073709551617}`)
	type Product struct {
		ID uint32 `json:"id"`
	}
	products, _ := tributary.Get[[]Product](tc, "products")
	big, _ := tributary.Get[any](tc, "big") // a json.Number: every digit kept
	_, err := tributary.Get[string](tc, "big")
	fmt.Println(len(products), big)
	fmt.Println(err)
	// Output:
	// 2 18446744073709551617
	// context key "big" cannot be read as string: json: cannot unmarshal number into Go value of type string
}

func ExampleContext_Delta() {
	tc, _ := tributary.ContextFromJSON(`{"a": 1, "secret": "s"}`)
	fmt.Println(tc.Insert("a", 2)) // insert never overwrites
	fmt.Println(tc.Update("b", 2)) // update never creates
	_ = tc.Upsert("b", []int{1, 2})
	tc.Remove("secret")
	set, removed := tc.Delta()
	fmt.Println(string(set["b"]), removed)
	// Output:
	// context key "a" already exists; use Update or Upsert to change it
	// context key "b" not found
	// [1,2] [secret]
}

func ExampleNewWorkflow() {
	generate := func(_ context.Context, tc *tributary.Context) error { return tc.Insert("n", 1) }
	partition := func(_ context.Context, tc *tributary.Context) error {
		if _, err := tributary.Get[int](tc, "n"); err != nil {
			return err // a ContextError: not retried
		}
		return errors.New("the bucket is unreachable") // retried up to RetryAttempts times
	}
	workflow := tributary.NewWorkflow("etl",
		tributary.Task{ID: "generate", RetryAttempts: 2, Run: generate},
		tributary.Task{ID: "partition", Dependencies: []string{"generate"}, RetryAttempts: 3, RetryDelayMS: 1000, Run: partition},
	)
	fmt.Println(workflow.Validate())
	fmt.Println(workflow.Definition().Tasks[1].HandlerName(workflow.Name))
	// Output:
	// <nil>
	// etl.partition
}

func ExampleNonRetryable() {
	err := fmt.Errorf("charging: %w", tributary.NonRetryablef("card %s declined", "4242"))
	fmt.Println(errors.Is(err, tributary.ErrNonRetryable), err)
	// Output: true charging: card 4242 declined
}
