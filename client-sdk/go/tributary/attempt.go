package tributary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"
	"unicode/utf8"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"google.golang.org/protobuf/proto"
)

// maxFailureMessageBytes is the longest Failed.message the server keeps.
const maxFailureMessageBytes = 65_536

// assign takes an attempt: reports it started, resolves its input (from
// the value cache, fetching what is missing), and runs it.
func (d *driver) assign(assign *pb.Assign, queue *sendQueue) {
	id := assign.GetAttemptId()
	if _, ok := d.running[id]; ok {
		// Already ours (a reclaimed attempt): never run it twice.
		return
	}
	if _, ok := d.unacked[id]; ok {
		return
	}
	queue.push(&pb.ConnectRequest{Message: &pb.ConnectRequest_Started{Started: &pb.Started{AttemptId: id}}})
	attempt := &runningAttempt{assign: assign, handler: d.w.handlers[assign.GetHandler()]}
	d.running[id] = attempt
	defer d.publishCounts()
	if attempt.handler == nil {
		d.report(queue, failedResult(id, fmt.Sprintf("this worker serves no handler %q", excerpt(assign.GetHandler())), true))
		return
	}
	values, err := parseObject(assign.GetInputContextJson())
	if err != nil {
		d.report(queue, failedResult(id, "invalid input context: "+err.Error(), true))
		return
	}
	if d.cache == nil {
		if len(assign.GetReferences()) > 0 {
			d.report(queue, failedResult(id, "the server sent value references to a worker without a value cache", false))
			return
		}
		d.launch(attempt, values)
		return
	}
	runID := assign.GetRunId()
	for _, ref := range assign.GetInlineValues() {
		if value, ok := values[ref.GetKey()]; ok {
			d.cache.put(valueRef{runID: runID, writer: ref.GetWriterAttemptId(), key: ref.GetKey()}, value)
		}
	}
	var missing []*pb.ValueRef
	for _, ref := range assign.GetReferences() {
		if value, ok := d.cache.get(valueRef{runID: runID, writer: ref.GetWriterAttemptId(), key: ref.GetKey()}); ok {
			values[ref.GetKey()] = value
		} else {
			missing = append(missing, ref)
		}
	}
	if len(missing) == 0 {
		d.launch(attempt, values)
		return
	}
	attempt.waiting = &valueWait{values: values}
	for start := 0; start < len(missing); start += maxRefsPerFetch {
		fetch := &fetchRequest{attempt: attempt, refs: missing[start:min(start+maxRefsPerFetch, len(missing))]}
		d.fetches = append(d.fetches, fetch)
		attempt.waiting.pending++
		queue.push(fetchValuesRequest(fetch))
	}
}

func fetchValuesRequest(fetch *fetchRequest) *pb.ConnectRequest {
	return &pb.ConnectRequest{Message: &pb.ConnectRequest_FetchValues{FetchValues: &pb.FetchValues{
		RunId: fetch.attempt.assign.GetRunId(),
		Refs:  fetch.refs,
	}}}
}

// valuesArrived answers the oldest FetchValues of the run: the values go to
// the cache and the waiting attempt, which runs once it has them all.
func (d *driver) valuesArrived(values *pb.Values, queue *sendQueue) {
	index := -1
	for i, fetch := range d.fetches {
		if fetch.attempt.assign.GetRunId() == values.GetRunId() {
			index = i
			break
		}
	}
	if index < 0 {
		d.w.logger.Debug("values nobody waits for", "run_id", values.GetRunId())
		return
	}
	fetch := d.fetches[index]
	d.fetches = append(d.fetches[:index], d.fetches[index+1:]...)
	type name struct{ writer, key string }
	got := make(map[name]string, len(values.GetValues()))
	for _, value := range values.GetValues() {
		got[name{value.GetRef().GetWriterAttemptId(), value.GetRef().GetKey()}] = value.GetValueJson()
	}
	attempt := fetch.attempt
	wait := attempt.waiting
	runID := attempt.assign.GetRunId()
	for _, ref := range fetch.refs {
		text, ok := got[name{ref.GetWriterAttemptId(), ref.GetKey()}]
		if !ok {
			wait.missing = append(wait.missing, ref.GetKey())
			continue
		}
		value := json.RawMessage(text)
		wait.values[ref.GetKey()] = value
		if d.cache != nil {
			d.cache.put(valueRef{runID: runID, writer: ref.GetWriterAttemptId(), key: ref.GetKey()}, value)
		}
	}
	wait.pending--
	if wait.pending > 0 || wait.abandoned {
		// An abandoned attempt (cancelled while waiting) already reported.
		return
	}
	if len(wait.missing) > 0 {
		d.report(queue, failedResult(attempt.assign.GetAttemptId(),
			fmt.Sprintf("the server no longer has the context values %s", strings.Join(quoteAll(wait.missing), ", ")), false))
		return
	}
	d.launch(attempt, wait.values)
	d.publishCounts()
}

func quoteAll(keys []string) []string {
	quoted := make([]string, len(keys))
	for index, key := range keys {
		quoted[index] = fmt.Sprintf("%q", excerpt(key))
	}
	return quoted
}

// liveFetches keeps the fetches whose attempts still wait: on a new stream
// the answers to the others will never come.
func (d *driver) liveFetches() []*fetchRequest {
	live := d.fetches[:0]
	for _, fetch := range d.fetches {
		if !fetch.attempt.waiting.abandoned {
			live = append(live, fetch)
		}
	}
	return live
}

// launch runs the handler in a goroutine of its own.
func (d *driver) launch(attempt *runningAttempt, values map[string]json.RawMessage) {
	assign := attempt.assign
	tc := newContext(values)
	tc.attempt = Attempt{
		RunID:        assign.GetRunId(),
		WorkflowName: assign.GetWorkflowName(),
		TaskID:       assign.GetTaskId(),
		AttemptID:    assign.GetAttemptId(),
		Number:       assign.GetAttemptNumber(),
		Handler:      assign.GetHandler(),
		MapIndex:     assign.MapIndex,
	}
	if assign.GetDeadline() != nil {
		tc.attempt.Deadline = assign.GetDeadline().AsTime()
	}
	ctx, cancel := context.WithCancelCause(d.attempts)
	attempt.cancel = cancel
	attempt.waiting = nil
	go d.execute(ctx, attempt.handler, tc)
}

// execute runs one attempt to its result: the handler's outcome, a panic,
// or a cancellation.
func (d *driver) execute(ctx context.Context, handler HandlerFunc, tc *Context) {
	id := tc.attempt.AttemptID
	outcome := make(chan error, 1)
	go func() {
		defer func() {
			if recovered := recover(); recovered != nil {
				d.w.logger.Error("task panicked", "attempt_id", id, "panic", recovered, "stack", string(debug.Stack()))
				outcome <- fmt.Errorf("task panicked: %v", recovered)
			}
		}()
		outcome <- handler(ctx, tc)
	}()
	var err error
	abandoned := false
	select {
	case err = <-outcome:
	case <-ctx.Done():
		grace := d.w.options.CancelGrace
		timer := time.NewTimer(grace)
		select {
		case err = <-outcome:
		case <-timer.C:
			abandoned = true
		}
		timer.Stop()
	}
	var result attemptResult
	switch {
	case ctx.Err() != nil:
		message := "cancelled: " + context.Cause(ctx).Error()
		if abandoned {
			message += fmt.Sprintf(" (the handler had not returned %s after its cancellation)", d.w.options.CancelGrace)
		}
		result = failedResult(id, message, false)
	case err != nil:
		result = failedResult(id, err.Error(), errors.Is(err, ErrNonRetryable))
	default:
		result = completedResult(tc)
	}
	select {
	case d.results <- result:
	case <-d.attempts.Done():
	}
}

func completedResult(tc *Context) attemptResult {
	id := tc.attempt.AttemptID
	set, removed, err := tc.deltaJSON()
	if err != nil {
		return failedResult(id, "the context cannot be encoded: "+err.Error(), true)
	}
	if !utf8.ValidString(set) {
		return failedResult(id, "the task's writes are not valid UTF-8 JSON text", true)
	}
	produced, _ := tc.Delta()
	return attemptResult{
		attemptID: id,
		produced:  produced,
		message: &pb.ConnectRequest{Message: &pb.ConnectRequest_Completed{Completed: &pb.Completed{
			AttemptId:   id,
			SetJson:     set,
			RemovedKeys: removed,
		}}},
	}
}

// failedResult is a Failed with a message the server accepts: valid UTF-8,
// no NUL, at most 65,536 bytes cut at a character boundary.
func failedResult(attemptID, message string, nonRetryable bool) attemptResult {
	message = strings.ReplaceAll(strings.ToValidUTF8(message, "\uFFFD"), "\x00", "\\0")
	if len(message) > maxFailureMessageBytes {
		cut := maxFailureMessageBytes
		for cut > 0 && !utf8.RuneStart(message[cut]) {
			cut--
		}
		message = message[:cut]
	}
	return attemptResult{
		attemptID: attemptID,
		message: &pb.ConnectRequest{Message: &pb.ConnectRequest_Failed{Failed: &pb.Failed{
			AttemptId:    attemptID,
			Message:      message,
			NonRetryable: nonRetryable,
		}}},
	}
}

// record keeps a result until it is acknowledged and returns the message
// to send.
func (d *driver) record(result attemptResult) *pb.ConnectRequest {
	result = d.fit(result)
	runID := ""
	if attempt, ok := d.running[result.attemptID]; ok {
		runID = attempt.assign.GetRunId()
		delete(d.running, result.attemptID)
	}
	d.unacked[result.attemptID] = &pendingResult{runID: runID, message: result.message, produced: result.produced}
	d.publishCounts()
	return result.message
}

// report records a result and sends it when a stream is open (otherwise
// it goes with the next registration).
func (d *driver) report(queue *sendQueue, result attemptResult) {
	message := d.record(result)
	if queue != nil {
		queue.push(message)
	}
}

// fit turns a result the server would refuse for its size into a
// non-retryable failure that says by how much, rather than breaking the
// stream on every resend.
func (d *driver) fit(result attemptResult) attemptResult {
	completed := result.message.GetCompleted()
	if completed != nil && d.maxContextBytes > 0 && uint64(len(completed.GetSetJson())) > d.maxContextBytes {
		size := uint64(len(completed.GetSetJson()))
		return failedResult(result.attemptID, fmt.Sprintf(
			"the task's writes are %d bytes of JSON, over the server's context limit of %d bytes by %d",
			size, d.maxContextBytes, size-d.maxContextBytes), true)
	}
	size := uint64(proto.Size(result.message))
	if size <= d.maxMessageBytes {
		return result
	}
	if completed != nil {
		return failedResult(result.attemptID, fmt.Sprintf(
			"the task's result is %d bytes, over the server's message limit of %d bytes by %d",
			size, d.maxMessageBytes, size-d.maxMessageBytes), true)
	}
	return result
}
