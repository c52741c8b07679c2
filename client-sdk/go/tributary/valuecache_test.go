package tributary

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
)

func TestValueCacheEvictsTheLeastRecentlyUsedByBytes(t *testing.T) {
	cache := newValueCache(30)
	a := valueRef{runID: "r1", writer: "w", key: "a"}
	b := valueRef{runID: "r1", writer: "w", key: "b"}
	c := valueRef{runID: "r2", writer: "", key: "c"}
	// Each value counts its text and its name (run, writer, key).
	cache.put(a, json.RawMessage(`"aaaaaaaaa"`)) // 11 + 4 bytes
	cache.put(b, json.RawMessage(`"bbbbbbbbb"`)) // 11 + 4 bytes
	if _, ok := cache.get(a); !ok {
		t.Fatal("a was kept")
	}
	cache.put(c, json.RawMessage(`"ccccccccc"`)) // 11 + 3 bytes; b is the least recently used
	if _, ok := cache.get(b); ok {
		t.Fatal("b should have been evicted")
	}
	if _, ok := cache.get(a); !ok {
		t.Fatal("a was used recently and stays")
	}
	if cache.used != 29 || cache.len() != 2 {
		t.Fatalf("used %d bytes in %d values", cache.used, cache.len())
	}
	cache.put(valueRef{runID: "r1", key: "huge"}, json.RawMessage(strings.Repeat("1", 40)))
	if cache.len() != 2 {
		t.Fatal("a value over the whole budget is not kept, and evicts nothing")
	}
	cache.put(a, json.RawMessage(`1`))
	if value, _ := cache.get(a); string(value) != "1" || cache.used != 19 {
		t.Fatalf("a replaced: %s, %d bytes", value, cache.used)
	}
	cache.forgetRun("r1")
	if _, ok := cache.get(a); ok || cache.len() != 1 || cache.used != 14 {
		t.Fatalf("forgetRun left %d values, %d bytes", cache.len(), cache.used)
	}
	cache.clear()
	if cache.len() != 0 || cache.used != 0 {
		t.Fatal("clear forgets everything")
	}
}

// cachingDriver is a worker's driver without a stream: messages it would
// send land in a queue the test reads.
func cachingDriver(t *testing.T, cacheBytes int64, handler HandlerFunc) (*driver, *sendQueue) {
	t.Helper()
	worker, err := NewWorker("http://127.0.0.1:1", WorkerOptions{ValueCacheBytes: cacheBytes})
	if err != nil {
		t.Fatal(err)
	}
	worker.Handle("w.t", handler)
	d := newDriver(worker, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	d.attempts = ctx
	return d, newSendQueue()
}

func drainQueue(queue *sendQueue) []*pb.ConnectRequest {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	var messages []*pb.ConnectRequest
	for {
		message, ok := queue.pop(ctx)
		if !ok {
			return messages
		}
		messages = append(messages, message)
	}
}

func awaitResult(t *testing.T, d *driver) attemptResult {
	t.Helper()
	select {
	case result := <-d.results:
		return result
	case <-time.After(10 * time.Second):
		t.Fatal("no result")
		return attemptResult{}
	}
}

func TestReferencesResolveFromTheCacheAndMissesAreFetched(t *testing.T) {
	inputs := make(chan string, 2)
	d, queue := cachingDriver(t, 1<<20, func(_ context.Context, tc *Context) error {
		inputs <- tc.JSON()
		return tc.Insert("out", 42)
	})
	// The first attempt receives its input by value and produces "out".
	d.assign(&pb.Assign{
		RunId: "run", TaskId: "t", AttemptId: "a1", AttemptNumber: 1, Handler: "w.t",
		InputContextJson: `{"in":"input value"}`,
		InlineValues:     []*pb.ValueRef{{Key: "in"}},
	}, queue)
	if got := <-inputs; got != `{"in":"input value"}` {
		t.Fatalf("first input = %s", got)
	}
	message := d.record(awaitResult(t, d))
	if message.GetCompleted().GetSetJson() != `{"out":42}` {
		t.Fatalf("result = %v", message)
	}
	d.acknowledged(&pb.ResultAck{AttemptId: "a1", Disposition: pb.ResultDisposition_RESULT_DISPOSITION_ACCEPTED})
	if d.cache.len() != 2 {
		t.Fatalf("the cache holds %d values, want the input and the produced one", d.cache.len())
	}
	drainQueue(queue)

	// The second receives both by reference, plus one it never saw.
	d.assign(&pb.Assign{
		RunId: "run", TaskId: "t2", AttemptId: "a2", AttemptNumber: 1, Handler: "w.t",
		InputContextJson: `{}`,
		References:       []*pb.ValueRef{{Key: "in"}, {Key: "out", WriterAttemptId: "a1"}, {Key: "far", WriterAttemptId: "a0"}},
	}, queue)
	sent := drainQueue(queue)
	if len(sent) != 2 || sent[0].GetStarted().GetAttemptId() != "a2" {
		t.Fatalf("sent = %v", sent)
	}
	fetch := sent[1].GetFetchValues()
	if fetch.GetRunId() != "run" || len(fetch.GetRefs()) != 1 || fetch.GetRefs()[0].GetKey() != "far" {
		t.Fatalf("fetch = %v", fetch)
	}
	if d.w.Status().Running != 1 {
		t.Fatal("the attempt waiting for values is held")
	}
	d.valuesArrived(&pb.Values{RunId: "run", Values: []*pb.Value{{Ref: fetch.GetRefs()[0], ValueJson: `[1,2]`}}}, queue)
	if got := <-inputs; got != `{"far":[1,2],"in":"input value","out":42}` {
		t.Fatalf("resolved input = %s", got)
	}
	if _, ok := d.cache.get(valueRef{runID: "run", writer: "a0", key: "far"}); !ok {
		t.Fatal("a fetched value is kept")
	}
	d.cache.forgetRun("run")
	if d.cache.len() != 0 {
		t.Fatal("ForgetRun drops the run's values")
	}
}

func TestAValueTheServerNoLongerHasFailsTheAttemptRetryably(t *testing.T) {
	d, queue := cachingDriver(t, 1<<20, noop)
	d.assign(&pb.Assign{RunId: "run", AttemptId: "a1", Handler: "w.t", References: []*pb.ValueRef{{Key: "gone", WriterAttemptId: "x"}}}, queue)
	d.valuesArrived(&pb.Values{RunId: "run"}, queue)
	failed := d.unacked["a1"].message.GetFailed()
	if failed == nil || failed.GetNonRetryable() || !strings.Contains(failed.GetMessage(), `"gone"`) {
		t.Fatalf("result = %v", d.unacked["a1"].message)
	}
}

// TestACancelWhileWaitingForValuesEndsTheAttempt: the attempt reports at
// once; the answer to its fetch still comes first and must not be taken
// for the next attempt's.
func TestACancelWhileWaitingForValuesEndsTheAttempt(t *testing.T) {
	inputs := make(chan string, 1)
	d, queue := cachingDriver(t, 1<<20, func(_ context.Context, tc *Context) error {
		inputs <- tc.JSON()
		return nil
	})
	d.assign(&pb.Assign{RunId: "run", AttemptId: "a1", Handler: "w.t", References: []*pb.ValueRef{{Key: "k"}}}, queue)
	d.cancel("a1", "run cancelled", queue)
	if failed := d.unacked["a1"].message.GetFailed(); failed == nil || failed.GetMessage() != "cancelled: run cancelled" {
		t.Fatalf("result = %v", d.unacked["a1"].message)
	}
	if _, running := d.running["a1"]; running {
		t.Fatal("the cancelled attempt is over")
	}
	d.assign(&pb.Assign{RunId: "run", AttemptId: "a2", Handler: "w.t", References: []*pb.ValueRef{{Key: "j"}}}, queue)
	d.valuesArrived(&pb.Values{RunId: "run", Values: []*pb.Value{{Ref: &pb.ValueRef{Key: "k"}, ValueJson: `1`}}}, queue)
	d.valuesArrived(&pb.Values{RunId: "run", Values: []*pb.Value{{Ref: &pb.ValueRef{Key: "j"}, ValueJson: `2`}}}, queue)
	if got := <-inputs; got != `{"j":2}` {
		t.Fatalf("the second attempt's input = %s", got)
	}
	if len(d.liveFetches()) != 0 {
		t.Fatal("every fetch was answered")
	}
}

func TestAValueLargerThanTheCacheIsFetchedEachTime(t *testing.T) {
	inputs := make(chan string, 1)
	d, queue := cachingDriver(t, 8, func(_ context.Context, tc *Context) error {
		inputs <- tc.JSON()
		return nil
	})
	d.assign(&pb.Assign{RunId: "run", AttemptId: "a1", Handler: "w.t", InputContextJson: `{"big":"0123456789"}`, InlineValues: []*pb.ValueRef{{Key: "big"}}}, queue)
	<-inputs
	if d.cache.len() != 0 {
		t.Fatal("a value over the budget is not kept")
	}
	d.assign(&pb.Assign{RunId: "run", AttemptId: "a2", Handler: "w.t", References: []*pb.ValueRef{{Key: "big"}}}, queue)
	if len(d.fetches) != 1 {
		t.Fatal("the value is fetched")
	}
}

func TestResultsOverTheServersLimitsBecomeNonRetryableFailures(t *testing.T) {
	d, _ := cachingDriver(t, -1, noop)
	if d.cache != nil {
		t.Fatal("a negative budget turns the cache off")
	}
	d.maxContextBytes = 10
	tc := NewContext()
	tc.attempt.AttemptID = "a1"
	_ = tc.Insert("k", strings.Repeat("x", 20))
	failed := d.fit(completedResult(tc)).message.GetFailed()
	if failed == nil || !failed.GetNonRetryable() || !strings.Contains(failed.GetMessage(), "over the server's context limit of 10 bytes") {
		t.Fatalf("failed = %v", failed)
	}
	long := failedResult("a1", strings.Repeat("é", maxFailureMessageBytes)+"\x00", false)
	message := long.message.GetFailed().GetMessage()
	if len(message) > maxFailureMessageBytes || strings.Contains(message, "\x00") || !strings.HasSuffix(message, "é") {
		t.Fatalf("message of %d bytes", len(message))
	}
}
