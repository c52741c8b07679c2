package tributary

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
)

func TestWorkerRunsAWorkflowWithLosslessContexts(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("lossless",
		Task{ID: "produce", Run: func(_ context.Context, tc *Context) error {
			if tc.Attempt().Number != 1 || tc.Attempt().TaskID != "produce" || tc.Attempt().WorkflowName != "lossless" {
				return NonRetryablef("attempt info: %+v", tc.Attempt())
			}
			big, err := Get[any](tc, "big")
			if err != nil {
				return err
			}
			if err := tc.Insert("copy", big); err != nil {
				return err
			}
			return tc.Insert("items", []string{"a", "b"})
		}},
		Task{ID: "consume", Dependencies: []string{"produce"}, Run: func(_ context.Context, tc *Context) error {
			items, err := Get[[]string](tc, "items")
			if err != nil {
				return err
			}
			tc.Remove("secret")
			if err := tc.Update("items", append(items, "c")); err != nil {
				return err
			}
			return tc.Insert("count", len(items)+1)
		}},
	)
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run := registerAndRun(t, client, workflow, map[string]any{
		"big":    jsonNumber("18446744073709551617"),
		"secret": "s",
	})
	if run.Status != RunSucceeded {
		t.Fatalf("run = %+v", run)
	}
	want := `{"big":18446744073709551617,"copy":18446744073709551617,"count":3,"items":["a","b","c"]}`
	if string(run.Context) != want {
		t.Fatalf("context = %s, want %s", run.Context, want)
	}
	count, err := RunValue[int](run, "count")
	if err != nil || count != 3 {
		t.Fatalf("count = %d, %v", count, err)
	}
}

func TestRetryThenSucceed(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("retried", Task{ID: "flaky", RetryAttempts: 1, NoRetryDelay: true, Run: func(_ context.Context, tc *Context) error {
		if tc.Attempt().Number == 1 {
			return errors.New("flaky: attempt 1")
		}
		return tc.Insert("attempt", tc.Attempt().Number)
	}})
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run := registerAndRun(t, client, workflow, nil)
	task := taskOf(t, run, "flaky")
	if run.Status != RunSucceeded || len(task.Attempts) != 2 || task.Attempts[0].Error != "flaky: attempt 1" || string(run.Context) != `{"attempt":2}` {
		t.Fatalf("run = %+v, task = %+v", run, task)
	}
}

func TestAMappedTaskRunsPerElementAndGathersInOrder(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("mapped", Task{ID: "upper", MapOver: "words", MapOutput: "loud", Run: func(_ context.Context, tc *Context) error {
		index, err := Get[uint32](tc, MapIndexKey)
		if err != nil {
			return err
		}
		if mapIndex := tc.Attempt().MapIndex; mapIndex == nil || *mapIndex != index {
			return NonRetryablef("attempt's map index %v, input's %d", mapIndex, index)
		}
		word, err := Get[string](tc, MapElementKey)
		if err != nil {
			return err
		}
		return tc.Insert("loud", strings.ToUpper(word))
	}})
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run := registerAndRun(t, client, workflow, map[string]any{"words": []string{"a", "bb", "ccc"}})
	if run.Status != RunSucceeded || string(run.Context) != `{"loud":["A","BB","CCC"],"words":["a","bb","ccc"]}` {
		t.Fatalf("run = %+v, context = %s", run, run.Context)
	}
	upper := taskOf(t, run, "upper")
	if len(upper.Instances) != 3 {
		t.Fatalf("upper = %+v", upper)
	}
	for index, instance := range upper.Instances {
		if instance.MapIndex == nil || int(*instance.MapIndex) != index || instance.State != TaskSucceeded || len(instance.Attempts) != 1 {
			t.Fatalf("instance %d = %+v", index, instance)
		}
	}
}

func TestGetRunListsAWindowOfInstancesAndCountsThemAll(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("windowed", Task{ID: "double", MapOver: "numbers", MapOutput: "doubled", Run: func(_ context.Context, tc *Context) error {
		number, err := Get[int](tc, MapElementKey)
		if err != nil {
			return err
		}
		return tc.Insert("doubled", number*2)
	}})
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	numbers := make([]int, 30)
	for index := range numbers {
		numbers[index] = index
	}
	run := registerAndRun(t, client, workflow, map[string]any{"numbers": numbers})
	if run.Status != RunSucceeded {
		t.Fatalf("run = %+v", run)
	}
	allSucceeded := map[TaskState]int{TaskSucceeded: 30}
	double := func(options ...GetRunOptions) TaskRun {
		t.Helper()
		got, err := client.GetRun(testContext(t), run.ID, options...)
		if err != nil {
			t.Fatal(err)
		}
		return taskOf(t, got, "double")
	}
	listed := func(task TaskRun) []uint32 {
		indices := []uint32{}
		for _, instance := range task.Instances {
			if instance.MapIndex == nil || instance.State != TaskSucceeded {
				t.Fatalf("instance = %+v", instance)
			}
			indices = append(indices, *instance.MapIndex)
		}
		return indices
	}

	window := double(GetRunOptions{InstancesFrom: 10, MaxInstances: ptr[uint32](5)})
	if got := listed(window); !slices.Equal(got, []uint32{10, 11, 12, 13, 14}) || !maps.Equal(window.InstanceCounts, allSucceeded) {
		t.Fatalf("window: instances %v, counts %v", got, window.InstanceCounts)
	}
	countsOnly := double(GetRunOptions{MaxInstances: ptr[uint32](0)})
	if len(countsOnly.Instances) != 0 || !maps.Equal(countsOnly.InstanceCounts, allSucceeded) {
		t.Fatalf("counts only: instances %v, counts %v", listed(countsOnly), countsOnly.InstanceCounts)
	}
	everything := double()
	want := make([]uint32, 30)
	for index := range want {
		want[index] = uint32(index)
	}
	if got := listed(everything); !slices.Equal(got, want) || !maps.Equal(everything.InstanceCounts, allSucceeded) {
		t.Fatalf("default: instances %v, counts %v", got, everything.InstanceCounts)
	}
}

func TestNonRetryableErrorFailsAtOnce(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("fatal",
		Task{ID: "fatal", RetryAttempts: 3, NoRetryDelay: true, Run: func(context.Context, *Context) error {
			return fmt.Errorf("while charging: %w", NonRetryablef("card declined"))
		}},
		Task{ID: "missing_key", RetryAttempts: 3, NoRetryDelay: true, Run: func(_ context.Context, tc *Context) error {
			_, err := Get[int](tc, "absent")
			return err
		}},
		Task{ID: "dependant", Dependencies: []string{"fatal"}, Run: noop},
	)
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run := registerAndRun(t, client, workflow, nil)
	fatal, missing, dependant := taskOf(t, run, "fatal"), taskOf(t, run, "missing_key"), taskOf(t, run, "dependant")
	if run.Status != RunFailed || fatal.State != TaskFailed || len(fatal.Attempts) != 1 || fatal.Error != "while charging: card declined" {
		t.Fatalf("fatal = %+v", fatal)
	}
	if missing.State != TaskFailed || len(missing.Attempts) != 1 || missing.Error != `context key "absent" not found` {
		t.Fatalf("missing_key = %+v", missing)
	}
	if dependant.State != TaskSkipped || dependant.SkipReason != SkipUpstreamFailed {
		t.Fatalf("dependant = %+v", dependant)
	}
}

func TestPanicFailsTheAttemptAndTheWorkerLivesOn(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	panicking := NewWorkflow("panicking", Task{ID: "boom", Run: func(context.Context, *Context) error {
		panic("throw: boom")
	}})
	fine := NewWorkflow("fine", Task{ID: "ok", Run: func(_ context.Context, tc *Context) error { return tc.Insert("ok", true) }})
	worker := startWorker(t, server.URL(), WorkerOptions{}, panicking, fine)
	run := registerAndRun(t, client, panicking, nil)
	task := taskOf(t, run, "boom")
	if run.Status != RunFailed || !strings.Contains(task.Error, "throw: boom") {
		t.Fatalf("task = %+v", task)
	}
	run = registerAndRun(t, client, fine, nil)
	if run.Status != RunSucceeded || worker.Status().Registrations != 1 {
		t.Fatalf("after the panic: run %s, status %+v", run.Status, worker.Status())
	}
}

func TestCancellationReachesTheHandler(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	observed := make(chan string, 1)
	workflow := NewWorkflow("cancellable", Task{ID: "wait", Run: func(ctx context.Context, _ *Context) error {
		entered <- struct{}{}
		<-ctx.Done()
		observed <- context.Cause(ctx).Error()
		return ctx.Err()
	}})
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "cancellable", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	if _, err := client.CancelRun(ctx, started.RunID); err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-observed:
		if reason == "" {
			t.Fatal("the cancellation has no reason")
		}
	case <-ctx.Done():
		t.Fatal("the handler never saw its cancellation")
	}
	run, err := client.Wait(ctx, started.RunID)
	if err != nil || run.Status != RunCancelled {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestTimeoutCancelsTheHandler(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	var cancelled atomic.Int32
	workflow := NewWorkflow("timing_out", Task{ID: "slow", TimeoutMS: 300, Run: func(ctx context.Context, _ *Context) error {
		select {
		case <-ctx.Done():
			cancelled.Add(1)
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return errors.New("never cancelled")
		}
	}})
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run := registerAndRun(t, client, workflow, nil)
	task := taskOf(t, run, "slow")
	if run.Status != RunFailed || task.Attempts[0].State != AttemptTimedOut || cancelled.Load() != 1 {
		t.Fatalf("task = %+v, cancelled %d", task, cancelled.Load())
	}
}

func TestHeartbeatsGoOnDuringCPUBoundHandlers(t *testing.T) {
	server := startServer(t, localserver.Options{HeartbeatIntervalMS: 100, LeaseTimeoutMS: 1000})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("spinning", Task{ID: "spin", Run: func(_ context.Context, tc *Context) error {
		// Three lease timeouts of pure CPU, never yielding on purpose.
		end := time.Now().Add(3000 * time.Millisecond)
		spins := 0
		for time.Now().Before(end) {
			spins++
		}
		return tc.Insert("spun", spins > 0)
	}})
	worker := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run := registerAndRun(t, client, workflow, nil)
	task := taskOf(t, run, "spin")
	if run.Status != RunSucceeded || len(task.Attempts) != 1 || worker.Status().Registrations != 1 {
		t.Fatalf("task = %+v, worker = %+v", task, worker.Status())
	}
}

func TestCapacityBoundsConcurrentAttempts(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	var running, peak atomic.Int32
	handler := func(_ context.Context, tc *Context) error {
		now := running.Add(1)
		for {
			seen := peak.Load()
			if now <= seen || peak.CompareAndSwap(seen, now) {
				break
			}
		}
		time.Sleep(200 * time.Millisecond)
		running.Add(-1)
		return nil
	}
	var tasks []Task
	for index := range 6 {
		tasks = append(tasks, Task{ID: fmt.Sprintf("t%d", index), Handler: "capacity.sleep", Run: handler})
	}
	workflow := NewWorkflow("capacity", tasks...)
	startWorker(t, server.URL(), WorkerOptions{Capacity: 2}, workflow)
	run := registerAndRun(t, client, workflow, nil)
	if run.Status != RunSucceeded || peak.Load() != 2 {
		t.Fatalf("run %s with a peak of %d attempts at once", run.Status, peak.Load())
	}
}

// TestServerRestartReclaimsTheHeldAttempt kills the server while a handler
// runs; the worker reconnects, lists the attempt as held, the server keeps
// it with the worker (no second run) and accepts its result.
func TestServerRestartReclaimsTheHeldAttempt(t *testing.T) {
	server := startServer(t, localserver.Options{HeartbeatIntervalMS: 100, LeaseTimeoutMS: 3000})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	var entries atomic.Int32
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	workflow := NewWorkflow("reclaimed", Task{ID: "held", Run: func(ctx context.Context, tc *Context) error {
		entries.Add(1)
		entered <- struct{}{}
		select {
		case <-release:
			return tc.Insert("held", "done")
		case <-ctx.Done():
			return ctx.Err()
		}
	}})
	worker := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "reclaimed", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := server.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := worker.WaitFor(ctx, func(status WorkerStatus) bool { return status.Connected && status.Registrations == 2 }); err != nil {
		t.Fatal(err)
	}
	close(release)
	run, err := client.Wait(ctx, started.RunID)
	if err != nil {
		t.Fatal(err)
	}
	task := taskOf(t, run, "held")
	if run.Status != RunSucceeded || len(task.Attempts) != 1 || entries.Load() != 1 || string(run.Context) != `{"held":"done"}` {
		t.Fatalf("run %s, task %+v, handler entered %d times", run.Status, task, entries.Load())
	}
}

// TestAbortedWorkersAttemptRunsAgainElsewhere: a worker that dies with an
// attempt loses it; another worker runs the task without using a retry.
func TestAbortedWorkersAttemptRunsAgainElsewhere(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	var first atomic.Bool
	first.Store(true)
	workflow := NewWorkflow("lost", Task{ID: "work", Run: func(ctx context.Context, tc *Context) error {
		if first.CompareAndSwap(true, false) {
			entered <- struct{}{}
			<-ctx.Done()
			return ctx.Err()
		}
		return tc.Insert("ran", true)
	}})
	doomed := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "lost", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	doomed.Abort()
	startWorker(t, server.URL(), WorkerOptions{}, workflow)
	run, err := client.Wait(ctx, started.RunID)
	if err != nil {
		t.Fatal(err)
	}
	task := taskOf(t, run, "work")
	if run.Status != RunSucceeded || len(task.Attempts) != 2 || task.Attempts[0].State != AttemptLost {
		t.Fatalf("task = %+v", task)
	}
}

func TestGracefulShutdownDrainsInFlightWork(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	var mu sync.Mutex
	finished := false
	workflow := NewWorkflow("drained", Task{ID: "slow", Run: func(ctx context.Context, tc *Context) error {
		entered <- struct{}{}
		time.Sleep(500 * time.Millisecond)
		mu.Lock()
		finished = true
		mu.Unlock()
		return tc.Insert("finished", ctx.Err() == nil)
	}})
	worker := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "drained", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	shutdownCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	report := worker.Shutdown(shutdownCtx)
	mu.Lock()
	done := finished
	mu.Unlock()
	if !report.Drained || report.CancelledAttempts != 0 || !done {
		t.Fatalf("report = %+v, handler finished: %v", report, done)
	}
	if status := worker.Status(); status.Connected || status.Running != 0 || status.Unacknowledged != 0 {
		t.Fatalf("status after shutdown = %+v", status)
	}
	run, err := client.GetRun(ctx, started.RunID)
	if err != nil || run.Status != RunSucceeded || string(run.Context) != `{"finished":true}` {
		t.Fatalf("run = %+v, %v", run, err)
	}
}

func TestShutdownDeadlineCancelsWhatStillRuns(t *testing.T) {
	server := startServer(t, localserver.Options{})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	workflow := NewWorkflow("stuck", Task{ID: "wait", Run: func(ctx context.Context, _ *Context) error {
		entered <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}})
	worker := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartRun(ctx, "stuck", nil); err != nil {
		t.Fatal(err)
	}
	<-entered
	shutdownCtx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	report := worker.Shutdown(shutdownCtx)
	if report.Drained || report.CancelledAttempts != 1 {
		t.Fatalf("report = %+v", report)
	}
}

func TestWorkerRefusesBadSetups(t *testing.T) {
	if _, err := NewWorker("ftp://x", WorkerOptions{}); err == nil {
		t.Fatal("a bad URL was accepted")
	}
	worker, err := NewWorker("http://127.0.0.1:1", WorkerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := worker.Start(); err == nil || !strings.Contains(err.Error(), "at least one handler") {
		t.Fatalf("no handlers: %v", err)
	}
	workflow := NewWorkflow("w", Task{ID: "a", Run: noop})
	if err := worker.Register(workflow, "ghost"); err == nil || !strings.Contains(err.Error(), `no task "ghost"`) {
		t.Fatalf("unknown task: %v", err)
	}
	worker.Handle("bad handler", noop)
	if err := worker.Start(); err == nil || !strings.Contains(err.Error(), `"bad handler"`) {
		t.Fatalf("bad handler name: %v", err)
	}
}

// TestAResultFinishedWhileDisconnectedIsResent: the handler ends while the
// server is down; the worker keeps the result, lists the attempt as held
// when it registers again, resends the result, and the server accepts it.
func TestAResultFinishedWhileDisconnectedIsResent(t *testing.T) {
	server := startServer(t, localserver.Options{HeartbeatIntervalMS: 100, LeaseTimeoutMS: 3000})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	workflow := NewWorkflow("resent", Task{ID: "held", Run: func(_ context.Context, tc *Context) error {
		entered <- struct{}{}
		<-release
		return tc.Insert("result", jsonNumber("18446744073709551617"))
	}})
	worker := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "resent", nil)
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	server.Kill()
	close(release)
	if err := worker.WaitFor(ctx, func(status WorkerStatus) bool {
		return !status.Connected && status.Unacknowledged == 1 && status.Running == 0
	}); err != nil {
		t.Fatal(err)
	}
	if err := server.Restart(); err != nil {
		t.Fatal(err)
	}
	run, err := client.Wait(ctx, started.RunID)
	if err != nil {
		t.Fatal(err)
	}
	task := taskOf(t, run, "held")
	if run.Status != RunSucceeded || len(task.Attempts) != 1 || string(run.Context) != `{"result":18446744073709551617}` {
		t.Fatalf("run %s, task %+v, context %s", run.Status, task, run.Context)
	}
	if err := worker.WaitFor(ctx, func(status WorkerStatus) bool { return status.Unacknowledged == 0 }); err != nil {
		t.Fatal(err)
	}
}

// TestTheReceiveLimitFollowsTheServer: a server announcing a message limit
// above the worker's initial one gets a stream opened with its limit.
func TestTheReceiveLimitFollowsTheServer(t *testing.T) {
	server := startServer(t, localserver.Options{Args: []string{"--max-context-bytes", "100000000"}})
	client := dialClient(t, server.URL())
	workflow := NewWorkflow("limits", Task{ID: "a", Run: noop})
	worker := startWorker(t, server.URL(), WorkerOptions{}, workflow)
	if err := worker.WaitFor(testContext(t), func(status WorkerStatus) bool { return status.Connected && status.Registrations == 2 }); err != nil {
		t.Fatal(err)
	}
	if run := registerAndRun(t, client, workflow, nil); run.Status != RunSucceeded {
		t.Fatalf("run = %+v", run)
	}
	if registrations := worker.Status().Registrations; registrations != 2 {
		t.Fatalf("%d registrations: the raised limit must hold across reconnections", registrations)
	}
	if _, err := NewWorker(server.URL(), WorkerOptions{Capacity: 10_001}); err == nil {
		t.Fatal("a capacity over the server's limit was accepted")
	}
}

// TestALostLeaseCancelsAttemptsAndReconnects: a server that stops answering
// (SIGSTOP) sends no heartbeat acknowledgement; after a lease the worker
// assumes the server dropped it, cancels its attempts and reconnects.
func TestALostLeaseCancelsAttemptsAndReconnects(t *testing.T) {
	server := startServer(t, localserver.Options{HeartbeatIntervalMS: 100, LeaseTimeoutMS: 1000})
	client := dialClient(t, server.URL())
	ctx := testContext(t)
	entered := make(chan struct{}, 1)
	cause := make(chan string, 1)
	workflow := NewWorkflow("leased", Task{ID: "wait", Run: func(ctx context.Context, _ *Context) error {
		entered <- struct{}{}
		<-ctx.Done()
		cause <- context.Cause(ctx).Error()
		return ctx.Err()
	}})
	worker := startWorker(t, server.URL(), WorkerOptions{Labels: map[string]string{"zone": "test"}, Name: "lease-test"}, workflow)
	executors, err := client.ListExecutors(ctx)
	if err != nil || len(executors) != 1 || executors[0].Name != "lease-test" || executors[0].Labels["zone"] != "test" ||
		executors[0].InstanceID != worker.InstanceID() || executors[0].Capacity != 4 || executors[0].Handlers[0] != "leased.wait" {
		t.Fatalf("executors = %+v, %v", executors, err)
	}
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	if _, err := client.StartRun(ctx, "leased", nil); err != nil {
		t.Fatal(err)
	}
	<-entered
	if err := server.Pause(); err != nil {
		t.Fatal(err)
	}
	select {
	case reason := <-cause:
		if reason != "the worker lost its lease on the server" {
			t.Fatalf("cancelled because %q", reason)
		}
	case <-ctx.Done():
		t.Fatal("the attempt was not cancelled after the lease was lost")
	}
	if err := server.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := worker.WaitFor(ctx, func(status WorkerStatus) bool { return status.Connected && status.Registrations >= 2 }); err != nil {
		t.Fatal(err)
	}
}
