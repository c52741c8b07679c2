package tributary

import (
	"encoding/json"
	"strings"
	"time"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// RunStatus is where a run is in its life: [QUEUED ->] PENDING -> RUNNING ->
// SUCCEEDED | FAILED | CANCELLED.
type RunStatus string

// The run statuses.
const (
	RunQueued    RunStatus = "QUEUED"
	RunPending   RunStatus = "PENDING"
	RunRunning   RunStatus = "RUNNING"
	RunSucceeded RunStatus = "SUCCEEDED"
	RunFailed    RunStatus = "FAILED"
	RunCancelled RunStatus = "CANCELLED"
)

// Terminal reports whether the run is over.
func (s RunStatus) Terminal() bool {
	return s == RunSucceeded || s == RunFailed || s == RunCancelled
}

// TaskState is where a task is within a run.
type TaskState string

// The task states.
const (
	TaskWaiting        TaskState = "WAITING"
	TaskReady          TaskState = "READY"
	TaskAssigned       TaskState = "ASSIGNED"
	TaskRunning        TaskState = "RUNNING"
	TaskSucceeded      TaskState = "SUCCEEDED"
	TaskFailed         TaskState = "FAILED"
	TaskSkipped        TaskState = "SKIPPED"
	TaskCancelled      TaskState = "CANCELLED"
	TaskRetryScheduled TaskState = "RETRY_SCHEDULED"
)

// SkipReason says why a task was skipped; empty when it was not.
type SkipReason string

// The skip reasons.
const (
	SkipUpstreamFailed SkipReason = "UPSTREAM_FAILED"
	SkipRuleNotMet     SkipReason = "RULE_NOT_MET"
)

// AttemptState is the outcome of one attempt.
type AttemptState string

// The attempt states.
const (
	AttemptAssigned  AttemptState = "ASSIGNED"
	AttemptRunning   AttemptState = "RUNNING"
	AttemptSucceeded AttemptState = "SUCCEEDED"
	AttemptFailed    AttemptState = "FAILED"
	AttemptTimedOut  AttemptState = "TIMED_OUT"
	AttemptLost      AttemptState = "LOST"
	AttemptCancelled AttemptState = "CANCELLED"
)

// enumName turns a protobuf enum name into the SDK's: the prefix goes, and
// UNSPECIFIED becomes empty.
func enumName(name, prefix string) string {
	name = strings.TrimPrefix(name, prefix)
	if name == "UNSPECIFIED" {
		return ""
	}
	return name
}

func runStatusFromProto(status pb.RunStatus) RunStatus {
	return RunStatus(enumName(status.String(), "RUN_STATUS_"))
}

func (s RunStatus) toProto() pb.RunStatus {
	if s == "" {
		return pb.RunStatus_RUN_STATUS_UNSPECIFIED
	}
	return pb.RunStatus(pb.RunStatus_value["RUN_STATUS_"+string(s)])
}

// Run is a run of a workflow version.
type Run struct {
	// ID is the run's id (a UUIDv7).
	ID string
	// WorkflowName is the workflow's name.
	WorkflowName string
	// WorkflowVersion is the version the run is pinned to.
	WorkflowVersion string
	// Status is the run's status.
	Status RunStatus
	// Input is the input context, JSON text of an object.
	Input json.RawMessage
	// Context is the run's context (final once the run is over), JSON text
	// of an object with sorted keys.
	Context json.RawMessage
	// IdempotencyKey is the key given to StartRun, if any.
	IdempotencyKey string
	// CreatedAt is when the run was created.
	CreatedAt time.Time
	// FinishedAt is when the run ended; zero while it runs.
	FinishedAt time.Time
	// Tasks are the run's tasks in canonical order (empty from ListRuns).
	Tasks []TaskRun
	// Conflicts are keys written by two tasks with no path between them.
	Conflicts []ContextConflict
	// RetryCount is how many times RetryRun re-ran the run.
	RetryCount uint32
	// ConcurrencyKey is the run's concurrency key; empty when its workflow
	// has no concurrency policy.
	ConcurrencyKey string
	// QueuePosition is, while the run is QUEUED, its position in its key's
	// queue (1 starts next); 0 otherwise.
	QueuePosition uint32
}

// Task returns the task with id, if the run has it.
func (r *Run) Task(id string) (TaskRun, bool) {
	for _, task := range r.Tasks {
		if task.TaskID == id {
			return task, true
		}
	}
	return TaskRun{}, false
}

// Values splits the run's context into its top-level values.
func (r *Run) Values() (map[string]json.RawMessage, error) {
	return parseObject(string(r.Context))
}

// RunValue reads key of the run's context as a T (with UseNumber).
func RunValue[T any](run *Run, key string) (T, error) {
	values, err := run.Values()
	if err != nil {
		var zero T
		return zero, err
	}
	return Get[T](newContext(values), key)
}

// TaskRun is the state of one task within a run.
type TaskRun struct {
	// TaskID is the task's id.
	TaskID string
	// State is the task's state.
	State TaskState
	// SkipReason is set when State is SKIPPED.
	SkipReason SkipReason
	// Error is the error of the last failed attempt, if any.
	Error string
	// NextAttemptAt is when the next attempt is due (RETRY_SCHEDULED only).
	NextAttemptAt time.Time
	// Attempts are the attempts so far, oldest first.
	Attempts []AttemptInfo
	// MapIndex is, for an instance of a mapped task (an entry of its
	// Instances), its element index; nil otherwise.
	MapIndex *uint32
	// Instances are, for a mapped task once expanded, its instances in
	// element order: possibly a window of them (from
	// GetRunOptions.InstancesFrom, at most GetRunOptions.MaxInstances or as
	// many as fit in one answer), each entry's MapIndex saying which.
	Instances []TaskRun
	// InstanceCounts are, for a mapped task once expanded, how many of all
	// its instances, listed in Instances or not, are in each state (states
	// with none left out); nil otherwise.
	InstanceCounts map[TaskState]int
}

// AttemptInfo is one attempt at running a task.
type AttemptInfo struct {
	// ID is the attempt's id.
	ID string
	// Number is 1 for the first attempt.
	Number uint32
	// ExecutorID is the executor it was assigned to.
	ExecutorID string
	// State is its outcome.
	State AttemptState
	// Error is the failure message, if it failed or timed out.
	Error string
	// AssignedAt, StartedAt and FinishedAt are when it was sent, reported
	// started, and ended (zero when not yet).
	AssignedAt, StartedAt, FinishedAt time.Time
}

// ContextConflict is a key written by two tasks with no path between them.
type ContextConflict struct {
	// Key is the top-level context key.
	Key string
	// WinningTaskID is the task whose write is in the context.
	WinningTaskID string
	// OverriddenTaskID is the task whose write was overridden.
	OverriddenTaskID string
}

func timeFromProto(timestamp *timestamppb.Timestamp) time.Time {
	if timestamp == nil {
		return time.Time{}
	}
	return timestamp.AsTime()
}

func runFromProto(run *pb.Run) *Run {
	out := &Run{
		ID:              run.GetId(),
		WorkflowName:    run.GetWorkflowName(),
		WorkflowVersion: run.GetWorkflowVersion(),
		Status:          runStatusFromProto(run.GetStatus()),
		Input:           jsonOrEmpty(run.GetInputContextJson()),
		Context:         jsonOrEmpty(run.GetContextJson()),
		IdempotencyKey:  run.GetIdempotencyKey(),
		CreatedAt:       timeFromProto(run.GetCreatedAt()),
		FinishedAt:      timeFromProto(run.GetFinishedAt()),
		RetryCount:      run.GetRetryCount(),
		ConcurrencyKey:  run.GetConcurrencyKey(),
		QueuePosition:   run.GetQueuePosition(),
	}
	for _, task := range run.GetTasks() {
		out.Tasks = append(out.Tasks, taskRunFromProto(task))
	}
	for _, conflict := range run.GetConflicts() {
		out.Conflicts = append(out.Conflicts, conflictFromProto(conflict))
	}
	return out
}

func taskRunFromProto(task *pb.TaskRun) TaskRun {
	taskRun := TaskRun{
		TaskID:        task.GetTaskId(),
		State:         TaskState(enumName(task.GetState().String(), "TASK_STATE_")),
		SkipReason:    SkipReason(enumName(task.GetSkipReason().String(), "SKIP_REASON_")),
		Error:         task.GetError(),
		NextAttemptAt: timeFromProto(task.GetNextAttemptAt()),
		MapIndex:      task.MapIndex,
	}
	for _, attempt := range task.GetAttempts() {
		taskRun.Attempts = append(taskRun.Attempts, AttemptInfo{
			ID:         attempt.GetId(),
			Number:     attempt.GetNumber(),
			ExecutorID: attempt.GetExecutorId(),
			State:      AttemptState(enumName(attempt.GetState().String(), "ATTEMPT_STATE_")),
			Error:      attempt.GetError(),
			AssignedAt: timeFromProto(attempt.GetAssignedAt()),
			StartedAt:  timeFromProto(attempt.GetStartedAt()),
			FinishedAt: timeFromProto(attempt.GetFinishedAt()),
		})
	}
	for _, instance := range task.GetInstances() {
		taskRun.Instances = append(taskRun.Instances, taskRunFromProto(instance))
	}
	if counts := task.GetInstanceCounts(); len(counts) > 0 {
		taskRun.InstanceCounts = make(map[TaskState]int, len(counts))
		for _, count := range counts {
			state := TaskState(enumName(count.GetState().String(), "TASK_STATE_"))
			taskRun.InstanceCounts[state] += int(count.GetCount())
		}
	}
	return taskRun
}

func conflictFromProto(conflict *pb.ContextConflict) ContextConflict {
	return ContextConflict{
		Key:              conflict.GetKey(),
		WinningTaskID:    conflict.GetWinningTaskId(),
		OverriddenTaskID: conflict.GetOverriddenTaskId(),
	}
}

func jsonOrEmpty(text string) json.RawMessage {
	if text == "" {
		return json.RawMessage("{}")
	}
	return json.RawMessage(text)
}

// RunEventType is what happened in a [RunEvent].
type RunEventType string

// The event types (see run.proto for the fields each one sets).
const (
	EventRunStarted         RunEventType = "RUN_STARTED"
	EventRunFinished        RunEventType = "RUN_FINISHED"
	EventTaskReady          RunEventType = "TASK_READY"
	EventTaskAssigned       RunEventType = "TASK_ASSIGNED"
	EventTaskStarted        RunEventType = "TASK_STARTED"
	EventTaskSucceeded      RunEventType = "TASK_SUCCEEDED"
	EventTaskFailed         RunEventType = "TASK_FAILED"
	EventTaskRetryScheduled RunEventType = "TASK_RETRY_SCHEDULED"
	EventTaskTimedOut       RunEventType = "TASK_TIMED_OUT"
	EventTaskSkipped        RunEventType = "TASK_SKIPPED"
	EventTaskCancelled      RunEventType = "TASK_CANCELLED"
	EventContextConflict    RunEventType = "CONTEXT_CONFLICT"
	EventExecutorConnected  RunEventType = "EXECUTOR_CONNECTED"
	EventExecutorLost       RunEventType = "EXECUTOR_LOST"
	EventRunRetried         RunEventType = "RUN_RETRIED"
	EventRunQueued          RunEventType = "RUN_QUEUED"
	EventTaskMapped         RunEventType = "TASK_MAPPED"
)

func (t RunEventType) toProto() pb.RunEventType {
	return pb.RunEventType(pb.RunEventType_value["RUN_EVENT_TYPE_"+string(t)])
}

// RunEvent is one event of a run's event log.
type RunEvent struct {
	// Cursor is the event's global position; WatchEvents resumes from it.
	Cursor uint64
	// Sequence is the position within the run: 1, 2, 3, ...
	Sequence uint64
	// RunID is the run's id.
	RunID string
	// WorkflowName is the run's workflow.
	WorkflowName string
	// Type is what happened.
	Type RunEventType
	// Time is when the server recorded it.
	Time time.Time
	// TaskID is the task concerned, for task events.
	TaskID string
	// AttemptID, AttemptNumber and ExecutorID name the attempt concerned.
	AttemptID string
	// AttemptNumber is 1 for the first attempt.
	AttemptNumber uint32
	// ExecutorID is the executor of the attempt.
	ExecutorID string
	// Error is the failure message, for failures, timeouts and losses.
	Error string
	// SkipReason is set for TASK_SKIPPED.
	SkipReason SkipReason
	// NextAttemptAt is set for TASK_RETRY_SCHEDULED.
	NextAttemptAt time.Time
	// RunStatus is the run's final status, for RUN_FINISHED.
	RunStatus RunStatus
	// Conflict is set for CONTEXT_CONFLICT.
	Conflict *ContextConflict
	// RetriedTaskIDs are the tasks reset, for RUN_RETRIED, in canonical
	// order.
	RetriedTaskIDs []string
	// ConcurrencyKey is the run's concurrency key, for RUN_QUEUED.
	ConcurrencyKey string
	// QueuePosition is the run's position in its key's queue when it was
	// queued, for RUN_QUEUED; 0 otherwise.
	QueuePosition uint32
	// MapIndex is, for an event about an instance of a mapped task (TaskID
	// is the mapped task's), the instance's element index; nil otherwise.
	MapIndex *uint32
	// MapSize is the number of instances, for TASK_MAPPED; 0 otherwise.
	MapSize uint32
}

func eventFromProto(event *pb.RunEvent) RunEvent {
	out := RunEvent{
		Cursor:         event.GetCursor(),
		Sequence:       event.GetSequence(),
		RunID:          event.GetRunId(),
		WorkflowName:   event.GetWorkflowName(),
		Type:           RunEventType(enumName(event.GetType().String(), "RUN_EVENT_TYPE_")),
		Time:           timeFromProto(event.GetTime()),
		TaskID:         event.GetTaskId(),
		AttemptID:      event.GetAttemptId(),
		AttemptNumber:  event.GetAttemptNumber(),
		ExecutorID:     event.GetExecutorId(),
		Error:          event.GetError(),
		SkipReason:     SkipReason(enumName(event.GetSkipReason().String(), "SKIP_REASON_")),
		NextAttemptAt:  timeFromProto(event.GetNextAttemptAt()),
		RunStatus:      runStatusFromProto(event.GetRunStatus()),
		RetriedTaskIDs: event.GetRetriedTaskIds(),
		ConcurrencyKey: event.GetConcurrencyKey(),
		QueuePosition:  event.GetQueuePosition(),
		MapIndex:       event.MapIndex,
		MapSize:        event.GetMapSize(),
	}
	if event.GetConflict() != nil {
		conflict := conflictFromProto(event.GetConflict())
		out.Conflict = &conflict
	}
	return out
}
