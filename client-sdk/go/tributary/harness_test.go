package tributary

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
)

// startServer runs the real server binary over a fresh SQLite file for one
// test.
func startServer(t *testing.T, options localserver.Options) *localserver.Server {
	t.Helper()
	if os.Getenv("TRIBUTARY_TEST_SERVER_LOG") != "" {
		options.Log = os.Stderr
	}
	server, err := localserver.Start(t.TempDir(), options)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	t.Cleanup(server.Stop)
	return server
}

func dialClient(t *testing.T, url string, options ...ClientOption) *Client {
	t.Helper()
	client, err := Dial(url, options...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// testContext bounds a test's waits: a safety net, not an assertion.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startWorker starts a worker serving workflow and waits until it is
// registered; the test's end aborts it.
func startWorker(t *testing.T, url string, options WorkerOptions, workflows ...*Workflow) *Worker {
	t.Helper()
	if options.ReconnectMax == 0 {
		options.ReconnectMin, options.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	}
	worker, err := NewWorker(url, options)
	if err != nil {
		t.Fatal(err)
	}
	for _, workflow := range workflows {
		if err := worker.Register(workflow); err != nil {
			t.Fatal(err)
		}
	}
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(worker.Abort)
	if err := worker.WaitConnected(testContext(t)); err != nil {
		t.Fatalf("the worker did not connect: %v", err)
	}
	return worker
}

// registerAndRun registers workflow, starts a run with input and waits for
// its end.
func registerAndRun(t *testing.T, client *Client, workflow *Workflow, input any) *Run {
	t.Helper()
	ctx := testContext(t)
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, workflow.Name, input)
	if err != nil {
		t.Fatal(err)
	}
	run, err := client.Wait(ctx, started.RunID)
	if err != nil {
		t.Fatal(err)
	}
	return run
}

func taskOf(t *testing.T, run *Run, id string) TaskRun {
	t.Helper()
	task, ok := run.Task(id)
	if !ok {
		t.Fatalf("run has no task %q", id)
	}
	return task
}

func noop(context.Context, *Context) error { return nil }

// jsonNumber is a number given as its exact text.
func jsonNumber(text string) json.Number { return json.Number(text) }
