package tributary

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestRetryRunRerunsTheFailureAndWaitFollowsToTheNewEnd(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	var mu sync.Mutex
	calls := map[string]int{}
	count := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		calls[id]++
		return calls[id]
	}
	workflow := NewWorkflow("flaky",
		Task{ID: "first", Run: func(_ context.Context, c *Context) error {
			return c.Insert("first", count("first"))
		}},
		Task{ID: "second", Dependencies: []string{"first"}, Run: func(_ context.Context, c *Context) error {
			n := count("second")
			if n == 1 {
				return NonRetryable(errors.New("not yet"))
			}
			return c.Insert("second", n)
		}},
	)
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	failed := registerAndRun(t, client, workflow, nil)
	if failed.Status != RunFailed || failed.RetryCount != 0 {
		t.Fatalf("first end = %+v", failed)
	}
	options := RetryOptions{RequestID: "go-retry"}
	retried, err := client.RetryRun(ctx, failed.ID, options)
	if err != nil || !slices.Equal(retried.RetriedTaskIDs, []string{"second"}) || retried.RetryCount != 1 {
		t.Fatalf("RetryRun = %+v, %v", retried, err)
	}
	again, err := client.RetryRun(ctx, failed.ID, options)
	if err != nil || again.RetryCount != 1 {
		t.Fatalf("repeated RetryRun = %+v, %v", again, err)
	}
	run, err := client.Wait(ctx, failed.ID)
	if err != nil || run.Status != RunSucceeded || run.RetryCount != 1 || string(run.Context) != `{"first":1,"second":2}` {
		t.Fatalf("new end = %+v, %v", run, err)
	}
	mu.Lock()
	if calls["first"] != 1 || calls["second"] != 2 {
		t.Fatalf("calls = %v", calls)
	}
	mu.Unlock()
	var retriedEvents [][]string
	var last RunEvent
	for event, err := range client.WatchRun(ctx, failed.ID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if event.Type == EventRunRetried {
			retriedEvents = append(retriedEvents, event.RetriedTaskIDs)
		}
		last = event
	}
	if len(retriedEvents) != 1 || !slices.Equal(retriedEvents[0], []string{"second"}) || last.RunStatus != RunSucceeded {
		t.Fatalf("RUN_RETRIED events %v, last %+v", retriedEvents, last)
	}
	if _, err := client.RetryRun(ctx, failed.ID, RetryOptions{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("a succeeded run without from_task: %v", err)
	}
}
