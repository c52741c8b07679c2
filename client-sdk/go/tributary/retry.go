package tributary

import (
	"context"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
)

// RetryOptions are the options of [Client.RetryRun].
type RetryOptions struct {
	// FromTask re-runs this task and everything downstream of it, instead
	// of the failed, skipped and cancelled tasks.
	FromTask string
	// RequestID names this retry: the same id as the run's latest retry
	// returns that retry's answer again instead of retrying twice.
	RequestID string
}

// RetriedRun is what [Client.RetryRun] reset.
type RetriedRun struct {
	// RunID is the run's id.
	RunID string
	// Status is the run's status now (RUNNING, or terminal again when no
	// reset task could run).
	Status RunStatus
	// RetryCount is how many times the run has been retried, this retry
	// included.
	RetryCount uint32
	// RetriedTaskIDs are the tasks reset, in canonical order.
	RetriedTaskIDs []string
}

// RetryRun re-runs a finished run in place: its failed, skipped and
// cancelled tasks (or options.FromTask and everything downstream of it)
// run again; succeeded tasks keep their outputs. A run still going is
// FAILED_PRECONDITION. [Client.Wait] then waits for the run's new end.
func (c *Client) RetryRun(ctx context.Context, runID string, options RetryOptions) (RetriedRun, error) {
	response, err := c.runs.RetryRun(ctx, &pb.RetryRunRequest{
		RunId:     runID,
		FromTask:  options.FromTask,
		RequestId: options.RequestID,
	})
	if err != nil {
		return RetriedRun{}, err
	}
	return RetriedRun{
		RunID:          response.GetRunId(),
		Status:         runStatusFromProto(response.GetStatus()),
		RetryCount:     response.GetRetryCount(),
		RetriedTaskIDs: response.GetRetriedTaskIds(),
	}, nil
}
