// Command conformance-worker is the Go SDK's conformance worker
// (conformance/SPEC.md): it serves the conformance.* handlers with the
// settings the runner passes in the environment, logs each handler's start,
// end and observed cancellation to CONFORMANCE_LOG, and drains gracefully
// on SIGTERM or SIGINT.
//
//	go build -o bin/conformance-worker ./cmd/conformance-worker
//	tributary-conformance --worker-cmd "client-sdk/go/bin/conformance-worker"
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "conformance-worker:", err)
		os.Exit(1)
	}
}

func run() error {
	server := os.Getenv("TRIBUTARY_SERVER")
	if server == "" {
		return fmt.Errorf("TRIBUTARY_SERVER is not set")
	}
	capacity, err := envInt("CONFORMANCE_CAPACITY", 4)
	if err != nil {
		return err
	}
	cacheBytes, err := envInt("CONFORMANCE_VALUE_CACHE_BYTES", 0)
	if err != nil {
		return err
	}
	if cacheBytes == 0 {
		// The runner's 0 means no cache; the SDK's 0 means its default.
		cacheBytes = -1
	}
	log, err := openLog(os.Getenv("CONFORMANCE_LOG"))
	if err != nil {
		return err
	}
	// key=value,key=value; unset or empty means no labels.
	labels := map[string]string{}
	for _, label := range strings.Split(os.Getenv("CONFORMANCE_LABELS"), ",") {
		if label != "" {
			key, value, _ := strings.Cut(label, "=")
			labels[key] = value
		}
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	worker, err := tributary.NewWorker(server, tributary.WorkerOptions{
		Namespace:       os.Getenv("TRIBUTARY_NAMESPACE"),
		Name:            os.Getenv("CONFORMANCE_WORKER_NAME"),
		Capacity:        uint32(capacity),
		Labels:          labels,
		ValueCacheBytes: int64(cacheBytes),
		ShutdownTimeout: 30 * time.Second,
		ReconnectMin:    50 * time.Millisecond,
		ReconnectMax:    time.Second,
		Logger:          logger,
	})
	if err != nil {
		return err
	}
	for name, handler := range handlers() {
		worker.Handle("conformance."+name, log.wrap(name, handler))
	}
	return worker.Run(context.Background())
}

func envInt(name string, fallback int64) (int64, error) {
	text := os.Getenv(name)
	if text == "" {
		return fallback, nil
	}
	value, err := strconv.ParseInt(text, 10, 64)
	if err != nil || value < 0 {
		return 0, fmt.Errorf("%s must be a non-negative integer, got %q", name, text)
	}
	return value, nil
}

// eventLog appends one JSON line per event with a single write on a file
// opened with O_APPEND, so lines of concurrent attempts never interleave.
type eventLog struct {
	file *os.File
	pid  int
}

func openLog(path string) (*eventLog, error) {
	if path == "" {
		return &eventLog{pid: os.Getpid()}, nil
	}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("CONFORMANCE_LOG: %w", err)
	}
	return &eventLog{file: file, pid: os.Getpid()}, nil
}

func (l *eventLog) write(event, handler, attemptID string) {
	if l.file == nil {
		return
	}
	line, _ := json.Marshal(map[string]any{"event": event, "handler": handler, "attempt_id": attemptID, "pid": l.pid})
	_, _ = l.file.Write(append(line, '\n'))
}

// wrap logs start as the handler's code is entered and end as it returns or
// panics; handlers log their own "cancelled".
func (l *eventLog) wrap(name string, handler func(context.Context, *tributary.Context, *eventLog) error) tributary.HandlerFunc {
	handlerName := "conformance." + name
	return func(ctx context.Context, tc *tributary.Context) error {
		attemptID := tc.Attempt().AttemptID
		l.write("start", handlerName, attemptID)
		defer l.write("end", handlerName, attemptID)
		return handler(ctx, tc, l)
	}
}
