// Command parallel_processing runs the seed workflow (Cloacina's
// parallel-processing tutorial) with the Go SDK: a server (started here on
// a temporary SQLite file, or the one --server names), a worker serving the
// nine tasks, one run, and the per-category stats in the same format as
// the Rust example.
//
//	go -C examples/go run ./parallel_processing --no-sleep
//	go -C examples/go run ./parallel_processing --server http://127.0.0.1:50051
//	go -C examples/go run ./parallel_processing --server URL --worker-only --handlers process_partition_1,process_partition_2,process_partition_3
//
// Results go to stdout, the run id and logs to stderr. The exit status is 0
// only when the run SUCCEEDED (with --worker-only: when the worker drained
// after SIGTERM or SIGINT).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

const (
	workerConnectLimit  = 10 * time.Second
	workerShutdownLimit = 10 * time.Second
)

type options struct {
	server      string
	databaseURL string
	capacity    uint
	workerOnly  bool
	handlers    []string
}

func main() {
	var opts options
	var noSleep bool
	var handlers string
	flag.StringVar(&opts.server, "server", "", "URL of a running server (default: start one on a temporary SQLite file)")
	flag.StringVar(&opts.databaseURL, "database-url", "", "database of the server started here (default: a temporary SQLite file)")
	flag.BoolVar(&noSleep, "no-sleep", false, "skip the tutorial's simulated sleeps (500 ms to load, 0.8-4 s per partition); the results are the same")
	flag.UintVar(&opts.capacity, "capacity", 3, "attempts the worker runs at once (the three partitions need 3 to run in parallel)")
	flag.BoolVar(&opts.workerOnly, "worker-only", false, "serve the handlers and start no run, until SIGTERM or SIGINT")
	flag.BoolVar(&opts.workerOnly, "worker", false, "the same as --worker-only, as in the Rust examples")
	flag.StringVar(&handlers, "handlers", "", "serve only these task ids, comma-separated (default: all nine)")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	sleeps = !noSleep
	if handlers != "" {
		opts.handlers = strings.Split(handlers, ",")
	}
	if opts.server != "" && opts.databaseURL != "" {
		fail(errors.New("--server and --database-url exclude each other"))
	}
	if opts.capacity < 1 {
		fail(errors.New("--capacity must be at least 1"))
	}
	ok, err := run(opts)
	if err != nil {
		fail(err)
	}
	if !ok {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "error:", err)
	os.Exit(1)
}

func run(opts options) (bool, error) {
	url := opts.server
	if url == "" {
		server, err := localserver.Start("", localserver.Options{DatabaseURL: opts.databaseURL, Log: os.Stderr})
		if err != nil {
			return false, fmt.Errorf("cannot start a local server: %w", err)
		}
		defer server.Stop()
		url = server.URL()
		slog.Info("local server started", "url", url)
	}
	workflow := Workflow()
	log := &attemptLog{}
	worker, err := newWorker(url, workflow, opts, log)
	if err != nil {
		return false, err
	}
	if opts.workerOnly {
		slog.Info("serving until SIGTERM or SIGINT", "handlers", worker.Handlers(), "server", url)
		if err := worker.Run(context.Background()); err != nil {
			return false, err
		}
		return true, nil
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	client, err := tributary.Dial(url)
	if err != nil {
		return false, err
	}
	defer client.Close()
	registered, err := client.RegisterWorkflow(ctx, workflow)
	if err != nil {
		return false, fmt.Errorf("cannot register workflow %s: %w", workflow.Name, err)
	}
	slog.Info("workflow registered", "workflow", workflow.Name, "version", registered.Version)
	if err := worker.Start(); err != nil {
		return false, err
	}
	connectCtx, cancel := context.WithTimeout(ctx, workerConnectLimit)
	defer cancel()
	if err := worker.WaitConnected(connectCtx); err != nil {
		worker.Abort()
		return false, fmt.Errorf("the worker did not register with %s within %s", url, workerConnectLimit)
	}

	clock := time.Now()
	started, err := client.StartRun(ctx, workflow.Name, map[string]any{})
	if err != nil {
		return false, fmt.Errorf("cannot start a run of %s: %w", workflow.Name, err)
	}
	// Early, and on stderr, so that the run can be followed while it goes.
	fmt.Fprintf(os.Stderr, "Started run %[1]s of %[2]s on %[3]s; follow it with: tributary run watch %[1]s --server %[3]s\n", started.RunID, workflow.Name, url)
	run, waitErr := client.Wait(ctx, started.RunID)
	elapsed := time.Since(clock)
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), workerShutdownLimit)
	defer cancelShutdown()
	if report := worker.Shutdown(shutdownCtx); !report.Drained {
		slog.Warn("the worker did not drain cleanly", "cancelled_attempts", report.CancelledAttempts)
	}
	if waitErr != nil {
		return false, fmt.Errorf("cannot follow run %s: %w", started.RunID, waitErr)
	}
	slog.Info("run finished", "run_id", run.ID, "status", run.Status)
	fmt.Print(render(finished{version: registered.Version, run: run, elapsed: elapsed, attempts: log.take()}, sleeps))
	return run.Status == tributary.RunSucceeded, nil
}

// newWorker serves the workflow's tasks (or those named by --handlers),
// noting when each attempt starts and ends on the worker's clock.
func newWorker(url string, workflow *tributary.Workflow, opts options, log *attemptLog) (*tributary.Worker, error) {
	worker, err := tributary.NewWorker(url, tributary.WorkerOptions{
		Name:     fmt.Sprintf("%s Go example (pid %d)", workflow.Name, os.Getpid()),
		Capacity: uint32(opts.capacity),
	})
	if err != nil {
		return nil, err
	}
	served := map[string]bool{}
	for _, id := range opts.handlers {
		if _, ok := workflow.Task(id); !ok {
			return nil, fmt.Errorf("--handlers: workflow %s has no task %q", workflow.Name, id)
		}
		served[id] = true
	}
	for _, task := range workflow.Tasks {
		if len(served) > 0 && !served[task.ID] {
			continue
		}
		worker.Handle(task.Definition().HandlerName(workflow.Name), log.wrap(task.ID, task.Run))
	}
	return worker, nil
}

// attempt is one attempt as the worker saw it.
type attempt struct {
	taskID            string
	started, finished time.Time
	succeeded         bool
}

type attemptLog struct {
	mu       sync.Mutex
	attempts []attempt
}

func (l *attemptLog) wrap(taskID string, handler tributary.HandlerFunc) tributary.HandlerFunc {
	return func(ctx context.Context, tc *tributary.Context) error {
		started := time.Now()
		err := handler(ctx, tc)
		l.mu.Lock()
		l.attempts = append(l.attempts, attempt{taskID: taskID, started: started, finished: time.Now(), succeeded: err == nil})
		l.mu.Unlock()
		return err
	}
}

func (l *attemptLog) take() []attempt {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]attempt(nil), l.attempts...)
}
