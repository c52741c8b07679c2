package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tributary-dev/tributary/client-sdk/go/localserver"
	"github.com/tributary-dev/tributary/client-sdk/go/tributary"
)

// TestConformanceWorkerProcess builds the worker, runs it as the runner
// does (a process configured by environment variables) against the real
// server, drives some of SPEC.md's scenarios, and stops it with SIGTERM
// while an attempt runs.
func TestConformanceWorkerProcess(t *testing.T) {
	dir := t.TempDir()
	binary := filepath.Join(dir, "conformance-worker")
	if output, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, output)
	}
	server, err := localserver.Start(dir, localserver.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Stop()
	logPath := filepath.Join(dir, "worker.log")
	worker := exec.Command(binary)
	worker.Env = append(os.Environ(),
		"TRIBUTARY_SERVER="+server.URL(),
		"TRIBUTARY_NAMESPACE=conformance-test",
		"CONFORMANCE_CAPACITY=3",
		"CONFORMANCE_VALUE_CACHE_BYTES=1048576",
		"CONFORMANCE_LOG="+logPath,
		"CONFORMANCE_WORKER_NAME=go-conformance",
	)
	worker.Stderr = os.Stderr
	if err := worker.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- worker.Wait() }()
	defer func() {
		_ = worker.Process.Kill()
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client, err := tributary.Dial(server.URL(), tributary.WithNamespace("conformance-test"))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	runOne := func(name string, tasks []tributary.TaskDefinition, input any) *tributary.Run {
		t.Helper()
		if _, err := client.RegisterDefinition(ctx, tributary.WorkflowDefinition{Name: name, Tasks: tasks}); err != nil {
			t.Fatal(err)
		}
		started, err := client.StartRun(ctx, name, input)
		if err != nil {
			t.Fatal(err)
		}
		run, err := client.Wait(ctx, started.RunID)
		if err != nil {
			t.Fatal(err)
		}
		return run
	}

	values, err := os.ReadFile("../../../../conformance/values.json")
	if err != nil {
		t.Fatal(err)
	}
	spec, err := tributary.Decode[struct {
		Values []json.RawMessage `json:"values"`
	}](values)
	if err != nil {
		t.Fatal(err)
	}
	for index, value := range spec.Values {
		run := runOne("echo", []tributary.TaskDefinition{{ID: "echo", Handler: "conformance.echo"}}, map[string]any{"echo_in": value})
		out, err := tributary.RunValue[json.RawMessage](run, "echo_out")
		if err != nil || !sameJSON(t, out, value) {
			t.Fatalf("value %d: %s came back as %s (%v)", index, value, out, err)
		}
	}

	run := runOne("throw", []tributary.TaskDefinition{{ID: "throw", Handler: "conformance.throw"}}, nil)
	if task, _ := run.Task("throw"); run.Status != tributary.RunFailed || !strings.Contains(task.Error, "throw: boom") {
		t.Fatalf("throw: %+v", task)
	}

	run = runOne("big_measure", []tributary.TaskDefinition{
		{ID: "big", Handler: "conformance.big"},
		{ID: "measure", Handler: "conformance.measure", Dependencies: []string{"big"}},
	}, map[string]any{"big_bytes": 10_000_000})
	measured, err := tributary.RunValue[map[string]int](run, "measured")
	if err != nil || measured["big"] != 10_000_002 || measured["big_bytes"] != 8 {
		t.Fatalf("measured = %v, %v", measured, err)
	}

	type opsCase struct {
		Name    string            `json:"name"`
		Input   json.RawMessage   `json:"input"`
		Ops     []json.RawMessage `json:"ops"`
		Data    json.RawMessage   `json:"data"`
		Set     json.RawMessage   `json:"set"`
		Removed []string          `json:"removed"`
		Errors  []*string         `json:"errors"`
	}
	opsText, err := os.ReadFile("../../../../tests/vectors/context_ops.json")
	if err != nil {
		t.Fatal(err)
	}
	cases, err := tributary.Decode[struct{ Cases []opsCase }](opsText)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases.Cases {
		run := runOne("vector", []tributary.TaskDefinition{{ID: "vector", Handler: "conformance.vector"}},
			map[string]any{"vector_input": c.Input, "vector_ops": c.Ops})
		got, err := tributary.RunValue[json.RawMessage](run, "vector_result")
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		want, _ := json.Marshal(map[string]any{"data": c.Data, "set": c.Set, "removed": c.Removed, "errors": c.Errors})
		if !sameJSON(t, got, want) {
			t.Fatalf("%s: got %s, want %s", c.Name, got, want)
		}
	}

	// SIGTERM while a sleep runs: the worker finishes it, the result is
	// committed, and the process exits 0.
	if _, err := client.RegisterDefinition(ctx, tributary.WorkflowDefinition{Name: "drain", Tasks: []tributary.TaskDefinition{{ID: "sleep", Handler: "conformance.sleep"}}}); err != nil {
		t.Fatal(err)
	}
	started, err := client.StartRun(ctx, "drain", map[string]any{"sleep_ms": 1000})
	if err != nil {
		t.Fatal(err)
	}
	for event, err := range client.WatchRun(ctx, started.RunID, 0) {
		if err != nil {
			t.Fatal(err)
		}
		if event.Type == tributary.EventTaskStarted {
			break
		}
	}
	if err := worker.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("the worker exited with %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the worker did not exit after SIGTERM")
	}
	drained, err := client.GetRun(ctx, started.RunID)
	if err != nil || drained.Status != tributary.RunSucceeded {
		t.Fatalf("drained run = %+v, %v", drained, err)
	}

	// Every attempt logged start and end, one JSON object per line.
	file, err := os.Open(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	open := map[string]int{}
	lines := 0
	scanner := bufio.NewScanner(file)
	for scanner.Scan() {
		var raw map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &raw); err != nil {
			t.Fatalf("log line %q: %v", scanner.Text(), err)
		}
		event, attemptID := fmt.Sprint(raw["event"]), fmt.Sprint(raw["attempt_id"])
		if raw["pid"] != float64(worker.Process.Pid) || !strings.HasPrefix(fmt.Sprint(raw["handler"]), "conformance.") {
			t.Fatalf("log line %q", scanner.Text())
		}
		switch event {
		case "start":
			open[attemptID]++
		case "end":
			open[attemptID]--
		}
		lines++
	}
	for attempt, balance := range open {
		if balance != 0 {
			t.Fatalf("attempt %s: %d starts without an end", attempt, balance)
		}
	}
	if want := 2 * (len(spec.Values) + 3 + len(cases.Cases) + 1); lines != want {
		t.Fatalf("%d log lines, want %d", lines, want)
	}
}

func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	x, err := tributary.Decode[any](a)
	if err != nil {
		t.Fatalf("%s: %v", a, err)
	}
	y, err := tributary.Decode[any](b)
	if err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return reflect.DeepEqual(x, y)
}
