// Command bench measures the Go SDK's worker against a real server: the
// dispatch latency of a chain of no-op tasks (a task's handler entry minus
// its dependency's handler return, on the worker's clock), and the no-op
// throughput of one worker process on a fan-out.
//
//	go run ./cmd/bench -chain 10000 -fanout 10000
//
// With no -server it starts the server binary (TRIBUTARY_BIN, else
// target/release, else target/debug) on a temporary SQLite file.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

func main() {
	server := flag.String("server", "", "URL of a running server (default: start one)")
	chain := flag.Int("chain", 10_000, "tasks in the chain (0 skips it)")
	fanout := flag.Int("fanout", 10_000, "tasks in the fan-out (0 skips it)")
	capacity := flag.Uint("capacity", 64, "the worker's capacity for the fan-out")
	flag.Parse()
	if err := run(*server, *chain, *fanout, uint32(*capacity)); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(url string, chain, fanout int, capacity uint32) error {
	if url == "" {
		server, err := localserver.Start("", localserver.Options{})
		if err != nil {
			return err
		}
		defer server.Stop()
		url = server.URL()
	}
	binary, _ := localserver.FindBinary()
	fmt.Printf("server: %s (%s)\n", url, binary)
	client, err := tributary.Dial(url)
	if err != nil {
		return err
	}
	defer client.Close()
	if chain > 0 {
		if err := benchChain(client, url, chain); err != nil {
			return err
		}
	}
	if fanout > 0 {
		if err := benchFanout(client, url, fanout, capacity); err != nil {
			return err
		}
	}
	return nil
}

// timeline notes each task's handler entry and return on one clock.
type timeline struct {
	mu      sync.Mutex
	entered []time.Time
	left    []time.Time
}

func newTimeline(size int) *timeline {
	return &timeline{entered: make([]time.Time, size), left: make([]time.Time, size)}
}

func (l *timeline) handler(ctx context.Context, tc *tributary.Context) error {
	entered := time.Now()
	index, err := strconv.Atoi(tc.Attempt().TaskID[1:])
	if err != nil {
		return tributary.NonRetryable(err)
	}
	left := time.Now()
	l.mu.Lock()
	l.entered[index], l.left[index] = entered, left
	l.mu.Unlock()
	return nil
}

func taskID(prefix string, index int) string { return fmt.Sprintf("%s%05d", prefix, index) }

func runWorkflow(client *tributary.Client, url string, workflow *tributary.Workflow, capacity uint32, tl *timeline) (time.Duration, error) {
	ctx := context.Background()
	if _, err := client.RegisterWorkflow(ctx, workflow); err != nil {
		return 0, err
	}
	worker, err := tributary.NewWorker(url, tributary.WorkerOptions{Capacity: capacity})
	if err != nil {
		return 0, err
	}
	worker.Handle("bench.noop", tl.handler)
	if err := worker.Start(); err != nil {
		return 0, err
	}
	defer worker.Shutdown(ctx)
	if err := worker.WaitConnected(ctx); err != nil {
		return 0, err
	}
	start := time.Now()
	started, err := client.StartRun(ctx, workflow.Name, nil)
	if err != nil {
		return 0, err
	}
	run, err := client.Wait(ctx, started.RunID)
	if err != nil {
		return 0, err
	}
	if run.Status != tributary.RunSucceeded {
		return 0, fmt.Errorf("the %s run ended %s", workflow.Name, run.Status)
	}
	return time.Since(start), nil
}

func benchChain(client *tributary.Client, url string, size int) error {
	tasks := make([]tributary.Task, size)
	tl := newTimeline(size)
	for index := range tasks {
		tasks[index] = tributary.Task{ID: taskID("c", index), Handler: "bench.noop", Run: tl.handler}
		if index > 0 {
			tasks[index].Dependencies = []string{taskID("c", index-1)}
		}
	}
	wall, err := runWorkflow(client, url, tributary.NewWorkflow("bench_chain", tasks...), 1, tl)
	if err != nil {
		return err
	}
	latencies := make([]time.Duration, 0, size-1)
	for index := 1; index < size; index++ {
		latencies = append(latencies, tl.entered[index].Sub(tl.left[index-1]))
	}
	slices.Sort(latencies)
	fmt.Printf("chain of %d no-op tasks: %s wall; dispatch latency p50 %s, p99 %s, max %s\n",
		size, wall.Round(time.Millisecond), percentile(latencies, 50), percentile(latencies, 99), latencies[len(latencies)-1].Round(time.Microsecond))
	return nil
}

func benchFanout(client *tributary.Client, url string, size int, capacity uint32) error {
	tasks := make([]tributary.Task, size)
	tl := newTimeline(size)
	for index := range tasks {
		tasks[index] = tributary.Task{ID: taskID("f", index), Handler: "bench.noop", Run: tl.handler}
	}
	wall, err := runWorkflow(client, url, tributary.NewWorkflow("bench_fanout", tasks...), capacity, tl)
	if err != nil {
		return err
	}
	first, last := tl.entered[0], tl.left[0]
	for index := range size {
		if tl.entered[index].Before(first) {
			first = tl.entered[index]
		}
		if tl.left[index].After(last) {
			last = tl.left[index]
		}
	}
	span := last.Sub(first)
	fmt.Printf("fan-out of %d no-op tasks, capacity %d: %s wall, %s from the first entry to the last return: %.0f tasks/s\n",
		size, capacity, wall.Round(time.Millisecond), span.Round(time.Millisecond), float64(size)/span.Seconds())
	return nil
}

func percentile(sorted []time.Duration, p int) time.Duration {
	index := (len(sorted) - 1) * p / 100
	return sorted[index].Round(time.Microsecond)
}
