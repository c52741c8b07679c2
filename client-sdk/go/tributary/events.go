package tributary

import (
	"context"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"time"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	rewatchMin = 100 * time.Millisecond
	rewatchMax = 2 * time.Second
)

// WatchRun streams a run's events after afterSequence (0 for all), in
// order, and ends after the RUN_FINISHED that ends the log (a retried
// run's earlier ones are followed by RUN_RETRIED). When the stream breaks (a lost
// connection, a server restart) it reopens it after the last event
// received, with backoff, so no event is missed or repeated. It yields an
// error and stops when ctx ends or the server refuses for good.
//
//	for event, err := range client.WatchRun(ctx, runID, 0) {
//		if err != nil { return err }
//		fmt.Println(event.Sequence, event.Type, event.TaskID)
//	}
func (c *Client) WatchRun(ctx context.Context, runID string, afterSequence uint64) iter.Seq2[RunEvent, error] {
	return func(yield func(RunEvent, error) bool) {
		backoff := newBackoff(rewatchMin, rewatchMax)
		for {
			finished, err := c.followRun(ctx, runID, &afterSequence, yield, backoff)
			if finished {
				return
			}
			if err != nil && (!isTransient(err) || ctx.Err() != nil) {
				yield(RunEvent{}, contextErrorOr(ctx, err))
				return
			}
			if err := backoff.wait(ctx); err != nil {
				yield(RunEvent{}, err)
				return
			}
		}
	}
}

// followRun reads one WatchRun stream; finished is true once the consumer
// stopped or the stream ended after RUN_FINISHED.
func (c *Client) followRun(ctx context.Context, runID string, afterSequence *uint64, yield func(RunEvent, error) bool, backoff *backoff) (finished bool, err error) {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.runs.WatchRun(streamCtx, &pb.WatchRunRequest{RunId: runID, AfterSequence: *afterSequence})
	if err != nil {
		return false, err
	}
	ended := false
	for {
		response, err := stream.Recv()
		if err != nil {
			// The server ends the stream after the RUN_FINISHED that ends
			// the log (a retried run has earlier ones). A stream that ends
			// otherwise was cut by a stopping server: follow on.
			if ended && errors.Is(err, io.EOF) {
				return true, nil
			}
			return false, err
		}
		backoff.reset()
		event := eventFromProto(response.GetEvent())
		*afterSequence = event.Sequence
		ended = event.Type == EventRunFinished
		if !yield(event, nil) {
			return true, nil
		}
	}
}

// WatchEventsOptions filter WatchEvents; filters combine with AND, values
// within one list with OR.
type WatchEventsOptions struct {
	// AfterCursor replays events after this cursor (0: the retained
	// history).
	AfterCursor uint64
	// FromNow skips history: only events committed after the call.
	FromNow bool
	// WorkflowNames keeps events of runs of these workflows.
	WorkflowNames []string
	// RunIDs keeps events of these runs.
	RunIDs []string
	// Types keeps events of these types.
	Types []RunEventType
}

// WatchEvents streams the events of every run of the namespace, filtered,
// in commit order, and follows live events until ctx ends or the consumer
// stops. After a disconnection or a server restart it resumes from the
// cursor of the last event received (FromNow applies only to the first
// call), so nothing is missed or repeated.
func (c *Client) WatchEvents(ctx context.Context, options WatchEventsOptions) iter.Seq2[RunEvent, error] {
	return func(yield func(RunEvent, error) bool) {
		request := &pb.WatchEventsRequest{
			AfterCursor:   options.AfterCursor,
			FromNow:       options.FromNow,
			WorkflowNames: options.WorkflowNames,
			RunIds:        options.RunIDs,
		}
		for _, kind := range options.Types {
			request.Types = append(request.Types, kind.toProto())
		}
		backoff := newBackoff(rewatchMin, rewatchMax)
		for {
			stopped, err := c.followEvents(ctx, request, yield, backoff)
			if stopped {
				return
			}
			if err != nil && (!isTransient(err) || ctx.Err() != nil) {
				yield(RunEvent{}, contextErrorOr(ctx, err))
				return
			}
			if err := backoff.wait(ctx); err != nil {
				yield(RunEvent{}, err)
				return
			}
		}
	}
}

func (c *Client) followEvents(ctx context.Context, request *pb.WatchEventsRequest, yield func(RunEvent, error) bool, backoff *backoff) (stopped bool, err error) {
	streamCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.runs.WatchEvents(streamCtx, request)
	if err != nil {
		return false, err
	}
	for {
		response, err := stream.Recv()
		if err != nil {
			return false, err
		}
		backoff.reset()
		event := eventFromProto(response.GetEvent())
		request.AfterCursor = event.Cursor
		request.FromNow = false
		if !yield(event, nil) {
			return true, nil
		}
	}
}

func contextErrorOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// isTransient reports whether a call may succeed when repeated: the server
// was unreachable, stopping or restarting.
func isTransient(err error) bool {
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.Unknown, codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.Internal:
		return true
	default:
		return false
	}
}

// backoff doubles a delay from min to max; each wait is jittered by a
// uniform factor in [0.5, 1] so that many clients spread out.
type backoff struct {
	min, max, next time.Duration
}

func newBackoff(min, max time.Duration) *backoff {
	return &backoff{min: min, max: max, next: min}
}

func (b *backoff) reset() { b.next = b.min }

// delay returns the next jittered delay and doubles the following one.
func (b *backoff) delay() time.Duration {
	current := b.next
	b.next = min(b.next*2, b.max)
	return time.Duration(float64(current) * (0.5 + rand.Float64()*0.5))
}

func (b *backoff) wait(ctx context.Context) error {
	timer := time.NewTimer(b.delay())
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}
