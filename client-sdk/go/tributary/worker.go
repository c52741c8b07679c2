package tributary

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

// maxCapacity is the largest max_concurrent_attempts the server accepts.
const maxCapacity = 10_000

// WorkerOptions configure a [Worker]; zero values take the defaults.
type WorkerOptions struct {
	// Namespace to serve (default "default").
	Namespace string
	// APIKey, when set, is sent as "authorization: Bearer <key>" on the
	// stream (a key of role executor).
	APIKey string
	// Name shown by ListExecutors (default: the host name and process id).
	Name string
	// InstanceID is the stable id of this worker across reconnects (default:
	// a new random UUID).
	InstanceID string
	// Capacity is how many attempts run at once (default 4).
	Capacity uint32
	// Labels are shown by ListExecutors; a task with RequiredLabels is
	// assigned only to workers that have every one of them.
	Labels map[string]string
	// ValueCacheBytes is the budget of the cache of context values the
	// server may then send by reference: 0 means DefaultValueCacheBytes, a
	// negative value turns the cache off (every input comes whole).
	ValueCacheBytes int64
	// HeartbeatInterval overrides the interval the server asks for (only
	// useful to test lease handling).
	HeartbeatInterval time.Duration
	// ReconnectMin and ReconnectMax bound the jittered reconnection backoff
	// (defaults 50 ms and 5 s).
	ReconnectMin, ReconnectMax time.Duration
	// ShutdownTimeout bounds the drain of Run (default 30 s).
	ShutdownTimeout time.Duration
	// CancelGrace is how long a cancelled handler may take to return before
	// its attempt is reported failed without it (default 10 s).
	CancelGrace time.Duration
	// Logger receives the worker's logs (default slog.Default()).
	Logger *slog.Logger
	// DialOptions are extra gRPC dial options.
	DialOptions []grpc.DialOption
}

// WorkerStatus is what a worker is doing, for logs and tests.
type WorkerStatus struct {
	// Connected is true while a stream is open and registered.
	Connected bool
	// Registrations counts registrations (1 + reconnections).
	Registrations uint64
	// ExecutorID is the id of the current (or last) registration.
	ExecutorID string
	// Running counts attempts running now.
	Running int
	// Unacknowledged counts results the server has not acknowledged.
	Unacknowledged int
	// CachedValues counts context values in the value cache.
	CachedValues int
}

// ShutdownReport is the outcome of [Worker.Shutdown].
type ShutdownReport struct {
	// Drained is true when every attempt finished and every result was
	// acknowledged in time.
	Drained bool
	// CancelledAttempts counts attempts cancelled because time ran out.
	CancelledAttempts int
}

// Worker runs task handlers for the server over one ExecutorService.Connect
// stream: it registers its handlers, runs up to Capacity attempts at once,
// heartbeats, delivers cancellations to handlers' contexts, turns panics
// into failed attempts, and survives lost connections and server restarts
// (reconnecting with jittered backoff, re-registering with the attempts it
// holds and resending unacknowledged results).
//
//	worker, err := tributary.NewWorker("http://127.0.0.1:50051", tributary.WorkerOptions{Capacity: 8})
//	if err != nil { ... }
//	worker.Register(workflow)
//	err = worker.Run(ctx) // until ctx ends or SIGINT/SIGTERM, then drains
type Worker struct {
	url      string
	options  WorkerOptions
	logger   *slog.Logger
	handlers map[string]HandlerFunc

	mu      sync.Mutex
	status  WorkerStatus
	changed chan struct{}
	started bool

	control chan shutdownRequest
	abort   context.CancelFunc
	done    chan struct{}
}

// NewWorker returns a worker of the server at serverURL
// ("http://host:port"); register handlers, then Start or Run it.
func NewWorker(serverURL string, options WorkerOptions) (*Worker, error) {
	if options.Namespace == "" {
		options.Namespace = DefaultNamespace
	}
	if err := checkNamespace(options.Namespace); err != nil {
		return nil, err
	}
	if _, err := grpcTarget(serverURL); err != nil {
		return nil, err
	}
	if options.Name == "" {
		host, _ := os.Hostname()
		options.Name = fmt.Sprintf("%s/%d", host, os.Getpid())
	}
	if options.InstanceID == "" {
		options.InstanceID = newUUID()
	}
	if options.Capacity == 0 {
		options.Capacity = 4
	}
	if options.Capacity > maxCapacity {
		return nil, fmt.Errorf("capacity %d is over the server's limit of %d attempts", options.Capacity, maxCapacity)
	}
	switch {
	case options.ValueCacheBytes == 0:
		options.ValueCacheBytes = DefaultValueCacheBytes
	case options.ValueCacheBytes < 0:
		options.ValueCacheBytes = 0
	}
	if options.ReconnectMin <= 0 {
		options.ReconnectMin = 50 * time.Millisecond
	}
	if options.ReconnectMax < options.ReconnectMin {
		options.ReconnectMax = max(5*time.Second, options.ReconnectMin)
	}
	if options.ShutdownTimeout <= 0 {
		options.ShutdownTimeout = 30 * time.Second
	}
	if options.CancelGrace <= 0 {
		options.CancelGrace = 10 * time.Second
	}
	logger := options.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &Worker{
		url:      serverURL,
		options:  options,
		logger:   logger.With("worker", options.InstanceID),
		handlers: map[string]HandlerFunc{},
		changed:  make(chan struct{}),
		control:  make(chan shutdownRequest),
		done:     make(chan struct{}),
	}, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// Handle serves fn under the handler name handler. Call it before Start.
func (w *Worker) Handle(handler string, fn HandlerFunc) {
	w.handlers[handler] = fn
}

// Register serves the tasks of workflow under their handler names: every
// task, or only those whose ids are given. It fails on an unknown id or a
// task without code.
func (w *Worker) Register(workflow *Workflow, taskIDs ...string) error {
	wanted := map[string]bool{}
	for _, id := range taskIDs {
		if _, ok := workflow.Task(id); !ok {
			return fmt.Errorf("workflow %q has no task %q", workflow.Name, id)
		}
		wanted[id] = true
	}
	for _, task := range workflow.Tasks {
		if len(wanted) > 0 && !wanted[task.ID] {
			continue
		}
		if task.Run == nil {
			return fmt.Errorf("task %q has no Run function", task.ID)
		}
		w.Handle(task.Definition().HandlerName(workflow.Name), task.Run)
	}
	return nil
}

// Handlers returns the handler names served, sorted.
func (w *Worker) Handlers() []string {
	names := make([]string, 0, len(w.handlers))
	for name := range w.handlers {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// InstanceID is the worker's stable instance id.
func (w *Worker) InstanceID() string { return w.options.InstanceID }

// Start connects in the background and keeps reconnecting; it returns at
// once. It fails when there is no handler or the worker was started.
func (w *Worker) Start() error {
	if len(w.handlers) == 0 {
		return errors.New("a worker needs at least one handler")
	}
	for name := range w.handlers {
		if !IsValidHandler(name) {
			return fmt.Errorf("invalid handler %q: must be 1-128 characters of a-z, A-Z, 0-9, _, -, ., : and /", excerpt(name))
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.started {
		return errors.New("the worker was already started")
	}
	conn, err := dial(w.url, w.options.Namespace, w.options.APIKey, w.options.DialOptions)
	if err != nil {
		return err
	}
	w.started = true
	ctx, cancel := context.WithCancel(context.Background())
	w.abort = cancel
	driver := newDriver(w, conn)
	go func() {
		defer close(w.done)
		defer conn.Close()
		// Handlers left running after a shutdown deadline see their context
		// end, and their results are no longer awaited.
		defer cancel()
		driver.run(ctx)
	}()
	return nil
}

// Run starts the worker and serves until ctx ends or the process gets
// SIGINT or SIGTERM, then shuts down gracefully within ShutdownTimeout.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(); err != nil {
		return err
	}
	signals, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-signals.Done()
	stop()
	w.logger.Info("shutting down: draining in-flight attempts", "timeout", w.options.ShutdownTimeout)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), w.options.ShutdownTimeout)
	defer cancel()
	report := w.Shutdown(shutdownCtx)
	if !report.Drained {
		return fmt.Errorf("the worker did not drain in time: %d attempts cancelled", report.CancelledAttempts)
	}
	return nil
}

type shutdownRequest struct {
	deadline time.Time
	done     chan ShutdownReport
}

// Shutdown stops gracefully: it asks the server for no more work, lets
// running attempts finish and their results be acknowledged, and cancels
// what still runs when ctx ends (then waits up to CancelGrace for those
// handlers). It returns once the worker has stopped.
func (w *Worker) Shutdown(ctx context.Context) ShutdownReport {
	w.mu.Lock()
	started := w.started
	w.mu.Unlock()
	if !started {
		return ShutdownReport{Drained: true}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(w.options.ShutdownTimeout)
	}
	request := shutdownRequest{deadline: deadline, done: make(chan ShutdownReport, 1)}
	select {
	case w.control <- request:
	case <-w.done:
		return ShutdownReport{}
	}
	report := <-request.done
	<-w.done
	return report
}

// Abort stops at once, as a crash would: the stream closes and running
// attempts are abandoned (their contexts cancelled) without reporting; the
// server re-queues them.
func (w *Worker) Abort() {
	w.mu.Lock()
	abort := w.abort
	w.mu.Unlock()
	if abort != nil {
		abort()
		<-w.done
	}
}

// Status returns a snapshot of what the worker is doing.
func (w *Worker) Status() WorkerStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.status
}

// WaitFor waits until condition holds for the worker's status, or ctx
// ends.
func (w *Worker) WaitFor(ctx context.Context, condition func(WorkerStatus) bool) error {
	for {
		w.mu.Lock()
		status, changed := w.status, w.changed
		w.mu.Unlock()
		if condition(status) {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// WaitConnected waits until the worker is registered with the server.
func (w *Worker) WaitConnected(ctx context.Context) error {
	return w.WaitFor(ctx, func(status WorkerStatus) bool { return status.Connected })
}

func (w *Worker) publish(change func(*WorkerStatus)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	before := w.status
	change(&w.status)
	if w.status != before {
		close(w.changed)
		w.changed = make(chan struct{})
	}
}
