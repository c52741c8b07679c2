package tributary

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestClientRegistersStartsListsCancelsAndWaits(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	workflow := NewWorkflow("client_calls", Task{ID: "only", Run: noop}).WithDescription("client calls")

	registered, err := client.RegisterWorkflow(ctx, workflow)
	if err != nil {
		t.Fatal(err)
	}
	if !registered.Created || registered.Version == "" || registered.Sequence != 1 || registered.Definition.Tasks[0].Handler != "client_calls.only" {
		t.Fatalf("registered = %+v", registered)
	}
	again, err := client.RegisterWorkflow(ctx, workflow)
	if err != nil || again.Created || again.Version != registered.Version {
		t.Fatalf("re-registration = %+v, %v", again, err)
	}
	fetched, err := client.GetWorkflow(ctx, "client_calls", "")
	if err != nil || fetched.Version != registered.Version || !fetched.Latest {
		t.Fatalf("GetWorkflow = %+v, %v", fetched, err)
	}

	listed, err := client.ListWorkflows(ctx, 0, "")
	if err != nil || len(listed.Workflows) != 1 || listed.Workflows[0].Definition.Name != "client_calls" || listed.Workflows[0].Definition.Description != "client calls" {
		t.Fatalf("ListWorkflows = %+v, %v", listed, err)
	}

	invalid := NewWorkflow("client_calls", Task{ID: "a", Dependencies: []string{"a"}, Run: noop})
	if _, err := client.RegisterWorkflow(ctx, invalid); err == nil || err.Error() != `task "a" depends on itself` {
		t.Fatalf("local validation: %v", err)
	}

	// No worker serves the task, so the run stays PENDING.
	input := map[string]any{"n": 1}
	started, err := client.StartRun(ctx, "client_calls", input, StartOptions{IdempotencyKey: "key-1"})
	if err != nil || !started.Created || started.WorkflowVersion != registered.Version {
		t.Fatalf("StartRun = %+v, %v", started, err)
	}
	same, err := client.StartRun(ctx, "client_calls", input, StartOptions{IdempotencyKey: "key-1"})
	if err != nil || same.Created || same.RunID != started.RunID {
		t.Fatalf("idempotent StartRun = %+v, %v", same, err)
	}
	_, err = client.StartRun(ctx, "client_calls", map[string]any{"n": 2}, StartOptions{IdempotencyKey: "key-1"})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("a different request under the same key: %v", err)
	}
	if _, err := client.StartRun(ctx, "client_calls", []int{1}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("a non-object input: %v", err)
	}

	run, err := client.GetRun(ctx, started.RunID)
	if err != nil || run.Status != RunPending || string(run.Input) != `{"n":1}` || run.IdempotencyKey != "key-1" || len(run.Tasks) != 1 {
		t.Fatalf("GetRun = %+v, %v", run, err)
	}
	if task := taskOf(t, run, "only"); task.State != TaskReady {
		t.Fatalf("task = %+v", task)
	}
	second, err := client.StartRun(ctx, "client_calls", nil)
	if err != nil {
		t.Fatal(err)
	}
	page, err := client.ListRuns(ctx, ListRunsOptions{WorkflowName: "client_calls", PageSize: 1})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].ID != second.RunID || page.NextPageToken == "" {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	page, err = client.ListRuns(ctx, ListRunsOptions{WorkflowName: "client_calls", PageToken: page.NextPageToken})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].ID != started.RunID {
		t.Fatalf("second page = %+v, %v", page, err)
	}

	cancelled, err := client.CancelRun(ctx, started.RunID)
	if err != nil || cancelled != RunCancelled {
		t.Fatalf("CancelRun = %v, %v", cancelled, err)
	}
	if _, err := client.CancelRun(ctx, started.RunID); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancelling a finished run: %v", err)
	}
	waited, err := client.Wait(ctx, started.RunID)
	if err != nil || waited.Status != RunCancelled || waited.FinishedAt.IsZero() || taskOf(t, waited, "only").State != TaskCancelled {
		t.Fatalf("Wait = %+v, %v", waited, err)
	}
	page, err = client.ListRuns(ctx, ListRunsOptions{Status: RunCancelled})
	if err != nil || len(page.Runs) != 1 || page.Runs[0].ID != started.RunID {
		t.Fatalf("cancelled runs = %+v, %v", page, err)
	}
	if _, err := client.GetRun(ctx, "no-such-run"); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown run: %v", err)
	}
	if _, err := client.Wait(ctx, "no-such-run"); status.Code(err) != codes.NotFound {
		t.Fatalf("waiting for an unknown run: %v", err)
	}
}

func TestNamespacesAreSeparate(t *testing.T) {
	server := startServer(t, localserver.Options{})
	ctx := testContext(t)
	billing := dialClient(t, server.URL(), WithNamespace("billing"))
	other := dialClient(t, server.URL())
	if _, err := billing.RegisterWorkflow(ctx, NewWorkflow("charges", Task{ID: "a", Run: noop})); err != nil {
		t.Fatal(err)
	}
	if _, err := other.GetWorkflow(ctx, "charges", ""); status.Code(err) != codes.NotFound {
		t.Fatalf("another namespace sees the workflow: %v", err)
	}
	if _, err := Dial(server.URL(), WithNamespace("bad\nname")); err == nil {
		t.Fatal("a namespace with a newline was accepted")
	}
	if _, err := Dial("https://example.invalid:1"); err == nil || !strings.Contains(err.Error(), "https") {
		t.Fatalf("https without credentials: %v", err)
	}
}

// TestWatchersResumeAcrossAServerRestart follows one run's events and the
// namespace's events while the server is killed and restarted mid-run:
// every event comes exactly once, in order.
func TestWatchersResumeAcrossAServerRestart(t *testing.T) {
	server := startServer(t, localserver.Options{HeartbeatIntervalMS: 100, LeaseTimeoutMS: 2000})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	workflow := NewWorkflow("watched",
		Task{ID: "gated", Run: func(ctx context.Context, tc *Context) error {
			entered <- struct{}{}
			select {
			case <-release:
				return tc.Insert("done", true)
			case <-ctx.Done():
				return ctx.Err()
			}
		}},
		Task{ID: "after", Dependencies: []string{"gated"}, Run: noop},
	)
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "watched", nil)
	if err != nil {
		t.Fatal(err)
	}

	var runEvents []RunEvent
	runDone := make(chan error, 1)
	go func() {
		for event, err := range client.WatchRun(ctx, started.RunID, 0) {
			if err != nil {
				runDone <- err
				return
			}
			runEvents = append(runEvents, event)
		}
		runDone <- nil
	}()
	allEvents := make(chan RunEvent, 1000)
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	var watcherErr atomic.Value
	go func() {
		for event, err := range client.WatchEvents(watchCtx, WatchEventsOptions{RunIDs: []string{started.RunID}}) {
			if err != nil {
				watcherErr.Store(err)
				return
			}
			allEvents <- event
		}
	}()

	<-entered
	if err := server.Restart(); err != nil {
		t.Fatal(err)
	}
	close(release)
	if err := <-runDone; err != nil {
		t.Fatalf("WatchRun: %v", err)
	}
	for index, event := range runEvents {
		if event.Sequence != uint64(index+1) {
			t.Fatalf("event %d has sequence %d: %+v", index, event.Sequence, runEvents)
		}
	}
	last := runEvents[len(runEvents)-1]
	if last.Type != EventRunFinished || last.RunStatus != RunSucceeded {
		t.Fatalf("last event = %+v", last)
	}
	var cursors []uint64
	for len(cursors) < len(runEvents) {
		event := <-allEvents
		if len(cursors) > 0 && event.Cursor <= cursors[len(cursors)-1] {
			t.Fatalf("cursor %d after %d", event.Cursor, cursors[len(cursors)-1])
		}
		if event.Sequence != uint64(len(cursors)+1) {
			t.Fatalf("WatchEvents gave sequence %d at %d", event.Sequence, len(cursors)+1)
		}
		cursors = append(cursors, event.Cursor)
	}
	stopWatching()
	if err, _ := watcherErr.Load().(error); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("WatchEvents: %v", err)
	}
}

func TestWatchEventsFiltersAndRefusals(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	workflow := NewWorkflow("filtered", Task{ID: "a", Run: noop}, Task{ID: "b", Dependencies: []string{"a"}, Run: noop})
	other := NewWorkflow("unwatched", Task{ID: "a", Run: noop})
	startWorker(t, server.URL(), WorkerOptions{}, workflow, other)
	earlier := registerAndRun(t, client, workflow, nil)
	var after uint64
	for event, err := range client.WatchRun(ctx, earlier.ID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		after = event.Cursor
	}

	registerAndRun(t, client, other, nil)
	later := registerAndRun(t, client, workflow, nil)
	options := WatchEventsOptions{AfterCursor: after, WorkflowNames: []string{"filtered"}, Types: []RunEventType{EventTaskSucceeded, EventRunFinished}}
	var seen []RunEvent
	for event, err := range client.WatchEvents(ctx, options) {
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, event)
		if event.Type == EventRunFinished {
			break
		}
	}
	if len(seen) != 3 || seen[0].Type != EventTaskSucceeded || seen[0].TaskID != "a" || seen[1].TaskID != "b" || seen[2].RunStatus != RunSucceeded {
		t.Fatalf("events = %+v", seen)
	}
	for _, event := range seen {
		if event.RunID != later.ID || event.Cursor <= after {
			t.Fatalf("an event outside the filter: %+v", event)
		}
	}

	for _, err := range client.WatchEvents(ctx, WatchEventsOptions{WorkflowNames: []string{""}}) {
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("an empty workflow name in a filter: %v", err)
		}
		break
	}
}
