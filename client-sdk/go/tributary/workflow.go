package tributary

import (
	"context"
	"fmt"
	"maps"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
)

// HandlerFunc runs one attempt of a task. ctx is cancelled when the server
// cancels the attempt (its run was cancelled or it timed out) or the worker
// stops; tc holds the task's input and records its writes. Returning nil
// completes the attempt with tc's delta; an error fails it (retried unless
// it matches [ErrNonRetryable]); a panic is recovered and fails it too.
type HandlerFunc func(ctx context.Context, tc *Context) error

// Task declares one task of a workflow with the seed's attributes. Zero
// values mean the server's defaults, so a task reads as short as its
// `#[task]` attribute:
//
//	tributary.Task{ID: "partition_data", Dependencies: []string{"generate_data"}, RetryAttempts: 2, Run: partitionData}
//
// Values out of range are sent as they are, so that validation names them.
type Task struct {
	// ID is the task's id: 1-64 characters of a-z, 0-9, _ and -, starting
	// with a letter.
	ID string
	// Dependencies are the ids of the tasks that must finish first.
	Dependencies []string
	// RetryAttempts is how many retries follow a failed first attempt
	// (default 0, at most 100).
	RetryAttempts int32
	// RetryDelayMS is the base delay before a retry in milliseconds; 0
	// means the default (1000). Set NoRetryDelay for retries without delay.
	RetryDelayMS int64
	// NoRetryDelay retries at once (retry_delay_ms 0).
	NoRetryDelay bool
	// RetryBackoff is fixed, linear or exponential (the default when empty).
	RetryBackoff string
	// RetryMaxDelayMS caps a retry delay; 0 means the default (30000, or
	// the base delay when larger).
	RetryMaxDelayMS int64
	// NoRetryJitter turns off the random [0.5, 1] factor on retry delays.
	NoRetryJitter bool
	// TimeoutMS limits one attempt, in milliseconds; 0 means the server's
	// default.
	TimeoutMS int64
	// TriggerRule is all_success (the default when empty), all_done,
	// one_success, one_failed or none_failed.
	TriggerRule string
	// Handler is the routing key; empty means "<workflow>.<task id>".
	Handler string
	// RequiredLabels are executor labels the task requires: only workers
	// whose Labels have every one of these keys with the same value are
	// assigned it.
	RequiredLabels map[string]string
	// MaxInFlight limits the attempts of the task's handler in flight at
	// once across every worker and run of the namespace (1 to 10000), for
	// a handler that calls something with a limit of its own; 0 means no
	// limit beyond the workers' capacity.
	MaxInFlight int32
	// MapOver maps the task over the JSON array at this context key: at
	// run time it runs once per element, each instance finding its element
	// under MapElementKey and its 0-based index under MapIndexKey, and
	// setting its output at MapOutput; the outputs are gathered in element
	// order into one array at that key. Empty: not mapped.
	MapOver string
	// MapOutput is the key the gathered outputs are written to (and each
	// instance sets); empty means the task's id.
	MapOutput string
	// MapMaxInstances bounds the instances (0 means the default, 10000).
	MapMaxInstances int32
	// Run is the task's code.
	Run HandlerFunc
}

// Definition is the task as the server stores it.
func (t Task) Definition() TaskDefinition {
	definition := TaskDefinition{
		ID:           t.ID,
		Dependencies: append([]string(nil), t.Dependencies...),
		RetryBackoff: t.RetryBackoff,
		TriggerRule:  t.TriggerRule,
		Handler:      t.Handler,
		MapOver:      t.MapOver,
		MapOutput:    t.MapOutput,
	}
	if t.MapMaxInstances != 0 {
		definition.MapMaxInstances = ptr(t.MapMaxInstances)
	}
	if len(t.RequiredLabels) > 0 {
		definition.RequiredLabels = maps.Clone(t.RequiredLabels)
	}
	if t.RetryAttempts != 0 {
		definition.RetryAttempts = ptr(t.RetryAttempts)
	}
	if t.NoRetryDelay {
		definition.RetryDelayMS = ptr(int64(0))
	} else if t.RetryDelayMS != 0 {
		definition.RetryDelayMS = ptr(t.RetryDelayMS)
	}
	if t.RetryMaxDelayMS != 0 {
		definition.RetryMaxDelayMS = ptr(t.RetryMaxDelayMS)
	}
	if t.NoRetryJitter {
		definition.RetryJitter = ptr(false)
	}
	if t.TimeoutMS != 0 {
		definition.TimeoutMS = ptr(t.TimeoutMS)
	}
	if t.MaxInFlight != 0 {
		definition.MaxInFlight = ptr(t.MaxInFlight)
	}
	return definition
}

func ptr[T any](value T) *T { return &value }

// TaskDefinition is one task as the server stores it (tributary.v1's
// TaskDefinition); its JSON form is the definition-file format. Unset
// optional settings take the server's defaults.
type TaskDefinition struct {
	// ID is the task's id.
	ID string `json:"id"`
	// Dependencies are the ids of the tasks that must finish first.
	Dependencies []string `json:"dependencies,omitempty"`
	// RetryAttempts is the number of retries after the first attempt.
	RetryAttempts *int32 `json:"retry_attempts,omitempty"`
	// RetryDelayMS is the base retry delay in milliseconds.
	RetryDelayMS *int64 `json:"retry_delay_ms,omitempty"`
	// RetryBackoff is fixed, linear or exponential.
	RetryBackoff string `json:"retry_backoff,omitempty"`
	// RetryMaxDelayMS caps a retry delay.
	RetryMaxDelayMS *int64 `json:"retry_max_delay_ms,omitempty"`
	// RetryJitter spreads retry delays (default true).
	RetryJitter *bool `json:"retry_jitter,omitempty"`
	// TimeoutMS limits one attempt.
	TimeoutMS *int64 `json:"timeout_ms,omitempty"`
	// TriggerRule decides whether the task runs once its dependencies end.
	TriggerRule string `json:"trigger_rule,omitempty"`
	// Handler is the routing key.
	Handler string `json:"handler,omitempty"`
	// RequiredLabels are the executor labels the task requires.
	RequiredLabels map[string]string `json:"required_labels,omitempty"`
	// MaxInFlight limits the handler's attempts in flight across the
	// namespace; nil means no limit.
	MaxInFlight *int32 `json:"max_in_flight,omitempty"`
	// MapOver is the context key of the array a mapped task maps over.
	MapOver string `json:"map_over,omitempty"`
	// MapOutput is the key the gathered outputs are written to.
	MapOutput string `json:"map_output,omitempty"`
	// MapMaxInstances bounds a mapped task's instances.
	MapMaxInstances *int32 `json:"map_max_instances,omitempty"`
}

// HandlerName is the handler the task is routed by in workflow: Handler,
// or "<workflow>.<task id>".
func (d TaskDefinition) HandlerName(workflow string) string {
	if d.Handler != "" {
		return d.Handler
	}
	return workflow + "." + d.ID
}

func (d TaskDefinition) toProto() *pb.TaskDefinition {
	return &pb.TaskDefinition{
		Id:              d.ID,
		Dependencies:    d.Dependencies,
		RetryAttempts:   d.RetryAttempts,
		RetryDelayMs:    d.RetryDelayMS,
		RetryBackoff:    d.RetryBackoff,
		RetryMaxDelayMs: d.RetryMaxDelayMS,
		RetryJitter:     d.RetryJitter,
		TimeoutMs:       d.TimeoutMS,
		TriggerRule:     d.TriggerRule,
		Handler:         d.Handler,
		RequiredLabels:  d.RequiredLabels,
		MaxInFlight:     d.MaxInFlight,
		MapOver:         d.MapOver,
		MapOutput:       d.MapOutput,
		MapMaxInstances: d.MapMaxInstances,
	}
}

func taskDefinitionFromProto(task *pb.TaskDefinition) TaskDefinition {
	return TaskDefinition{
		ID:              task.GetId(),
		Dependencies:    task.GetDependencies(),
		RetryAttempts:   task.RetryAttempts,
		RetryDelayMS:    task.RetryDelayMs,
		RetryBackoff:    task.GetRetryBackoff(),
		RetryMaxDelayMS: task.RetryMaxDelayMs,
		RetryJitter:     task.RetryJitter,
		TimeoutMS:       task.TimeoutMs,
		TriggerRule:     task.GetTriggerRule(),
		Handler:         task.GetHandler(),
		RequiredLabels:  task.GetRequiredLabels(),
		MaxInFlight:     task.MaxInFlight,
		MapOver:         task.GetMapOver(),
		MapOutput:       task.GetMapOutput(),
		MapMaxInstances: task.MapMaxInstances,
	}
}

// WorkflowDefinition is a workflow as the server stores it: a named DAG of
// task definitions. Its JSON form is the definition-file format.
type WorkflowDefinition struct {
	// Name is the workflow's name.
	Name string `json:"name"`
	// Description is free text for people.
	Description string `json:"description,omitempty"`
	// Tasks are the DAG's tasks, in any order.
	Tasks []TaskDefinition `json:"tasks"`
	// Concurrency limits the active runs per key; nil means no limit.
	Concurrency *ConcurrencyPolicy `json:"concurrency,omitempty"`
}

// ConcurrencyPolicy limits how many runs of a workflow may be active at once
// per key: exactly one of KeyPointer (a JSON pointer into the run's input)
// and FixedKey.
type ConcurrencyPolicy struct {
	// KeyPointer is an RFC 6901 JSON pointer into the run's input.
	KeyPointer string `json:"key_pointer,omitempty"`
	// FixedKey is the same key for every run.
	FixedKey string `json:"fixed_key,omitempty"`
	// MaxActiveRuns is the number of active runs allowed per key (default 1).
	MaxActiveRuns *int32 `json:"max_active_runs,omitempty"`
	// Strategy is queue (default), cancel_newest or cancel_in_progress.
	Strategy string `json:"strategy,omitempty"`
}

func (p *ConcurrencyPolicy) toProto() *pb.ConcurrencyPolicy {
	if p == nil {
		return nil
	}
	return &pb.ConcurrencyPolicy{KeyPointer: p.KeyPointer, FixedKey: p.FixedKey, MaxActiveRuns: p.MaxActiveRuns, Strategy: p.Strategy}
}

func concurrencyFromProto(p *pb.ConcurrencyPolicy) *ConcurrencyPolicy {
	if p == nil {
		return nil
	}
	return &ConcurrencyPolicy{KeyPointer: p.GetKeyPointer(), FixedKey: p.GetFixedKey(), MaxActiveRuns: p.MaxActiveRuns, Strategy: p.GetStrategy()}
}

// Validate checks the definition with the server's rules and messages
// (size limits excepted: only the server knows them).
func (d WorkflowDefinition) Validate() error { return validate(d) }

func (d WorkflowDefinition) toProto() *pb.WorkflowDefinition {
	tasks := make([]*pb.TaskDefinition, len(d.Tasks))
	for index, task := range d.Tasks {
		tasks[index] = task.toProto()
	}
	return &pb.WorkflowDefinition{Name: d.Name, Description: d.Description, Tasks: tasks, Concurrency: d.Concurrency.toProto()}
}

// Workflow groups tasks under a name; a [Client] registers it and a
// [Worker] serves its handlers.
type Workflow struct {
	// Name is the workflow's name: 1-64 characters of a-z, 0-9, _ and -,
	// starting with a letter.
	Name string
	// Description is free text for people (part of the version hash).
	Description string
	// Tasks are the workflow's tasks.
	Tasks []Task
	// Concurrency limits the active runs per key; nil means no limit.
	Concurrency *ConcurrencyPolicy
}

// NewWorkflow groups tasks into a workflow named name.
func NewWorkflow(name string, tasks ...Task) *Workflow {
	return &Workflow{Name: name, Tasks: tasks}
}

// WithDescription sets the description and returns the workflow.
func (w *Workflow) WithDescription(description string) *Workflow {
	w.Description = description
	return w
}

// WithConcurrency sets the concurrency policy and returns the workflow.
func (w *Workflow) WithConcurrency(policy ConcurrencyPolicy) *Workflow {
	w.Concurrency = &policy
	return w
}

// Definition is the workflow as the server stores it.
func (w *Workflow) Definition() WorkflowDefinition {
	tasks := make([]TaskDefinition, len(w.Tasks))
	for index, task := range w.Tasks {
		tasks[index] = task.Definition()
	}
	return WorkflowDefinition{Name: w.Name, Description: w.Description, Tasks: tasks, Concurrency: w.Concurrency}
}

// Validate checks the workflow with the server's rules and messages, and
// that every task has code to run.
func (w *Workflow) Validate() error {
	if err := w.Definition().Validate(); err != nil {
		return err
	}
	for _, task := range w.Tasks {
		if task.Run == nil {
			return fmt.Errorf("task %q has no Run function", task.ID)
		}
		if task.NoRetryDelay && task.RetryDelayMS != 0 {
			return fmt.Errorf("task %q: NoRetryDelay and RetryDelayMS (%d) are both set", task.ID, task.RetryDelayMS)
		}
	}
	return nil
}

// Task returns the task with id, if any.
func (w *Workflow) Task(id string) (Task, bool) {
	for _, task := range w.Tasks {
		if task.ID == id {
			return task, true
		}
	}
	return Task{}, false
}

// Handlers maps each task's handler name to its code.
func (w *Workflow) Handlers() map[string]HandlerFunc {
	handlers := make(map[string]HandlerFunc, len(w.Tasks))
	for _, task := range w.Tasks {
		handlers[task.Definition().HandlerName(w.Name)] = task.Run
	}
	return handlers
}
