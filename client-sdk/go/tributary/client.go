package tributary

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
)

// NamespaceMetadataKey is the gRPC metadata entry naming the namespace.
const NamespaceMetadataKey = "x-tributary-namespace"

// DefaultNamespace is the namespace used when none is named.
const DefaultNamespace = "default"

// maxReceiveBytes is the client's receive limit: a run's context can be as
// large as the server allows, so the server's limits decide.
const maxReceiveBytes = 1 << 30

// ClientOption configures [Dial].
type ClientOption func(*clientConfig)

type clientConfig struct {
	namespace   string
	apiKey      string
	dialOptions []grpc.DialOption
}

// WithNamespace sets the namespace every call is made in (default
// "default").
func WithNamespace(namespace string) ClientOption {
	return func(config *clientConfig) { config.namespace = namespace }
}

// WithAPIKey sends key as "authorization: Bearer <key>" with every call.
// A key acts in its own namespace; naming another is PERMISSION_DENIED.
func WithAPIKey(key string) ClientOption {
	return func(config *clientConfig) { config.apiKey = key }
}

// WithDialOptions adds gRPC dial options (for example credentials; the
// default is plaintext).
func WithDialOptions(options ...grpc.DialOption) ClientOption {
	return func(config *clientConfig) { config.dialOptions = append(config.dialOptions, options...) }
}

// Client registers workflows and starts, reads, lists, cancels, waits for
// and watches runs. It is safe for concurrent use.
type Client struct {
	conn      *grpc.ClientConn
	namespace string
	workflows pb.WorkflowServiceClient
	runs      pb.RunServiceClient
	executors pb.ExecutorServiceClient
	schedules pb.ScheduleServiceClient
}

// Dial returns a client of the server at serverURL ("http://host:port" or
// "host:port"). Connecting is lazy: the first call connects.
func Dial(serverURL string, options ...ClientOption) (*Client, error) {
	config := clientConfig{namespace: DefaultNamespace}
	for _, option := range options {
		option(&config)
	}
	conn, err := dial(serverURL, config.namespace, config.apiKey, config.dialOptions)
	if err != nil {
		return nil, err
	}
	return &Client{
		conn:      conn,
		namespace: config.namespace,
		workflows: pb.NewWorkflowServiceClient(conn),
		runs:      pb.NewRunServiceClient(conn),
		executors: pb.NewExecutorServiceClient(conn),
		schedules: pb.NewScheduleServiceClient(conn),
	}, nil
}

// dial opens a connection whose every call carries the namespace, and the
// API key when there is one.
func dial(serverURL, namespace, apiKey string, extra []grpc.DialOption) (*grpc.ClientConn, error) {
	target, err := grpcTarget(serverURL)
	if err != nil {
		return nil, err
	}
	if err := checkNamespace(namespace); err != nil {
		return nil, err
	}
	pairs := []string{NamespaceMetadataKey, namespace}
	if apiKey != "" {
		pairs = append(pairs, "authorization", "Bearer "+apiKey)
	}
	options := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, address string) (net.Conn, error) {
			var dialer net.Dialer
			conn, err := dialer.DialContext(ctx, "tcp", address)
			if err != nil {
				return nil, err
			}
			return wrapConn(conn), nil
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxReceiveBytes)),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, pairs...), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, pairs...), desc, cc, method, opts...)
		}),
	}
	conn, err := grpc.NewClient(target, append(options, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("invalid server URL %q: %w", excerpt(serverURL), err)
	}
	return conn, nil
}

func grpcTarget(serverURL string) (string, error) {
	target := strings.TrimSuffix(serverURL, "/")
	switch {
	case strings.HasPrefix(target, "http://"):
		target = strings.TrimPrefix(target, "http://")
	case strings.HasPrefix(target, "https://"):
		return "", fmt.Errorf("invalid server URL %q: https needs credentials, pass them with WithDialOptions and a host:port URL", excerpt(serverURL))
	}
	if target == "" || strings.ContainsAny(target, "/ ") {
		return "", fmt.Errorf("invalid server URL %q: expected http://host:port", excerpt(serverURL))
	}
	return target, nil
}

func checkNamespace(namespace string) error {
	if namespace == "" {
		return errors.New("invalid namespace: empty")
	}
	for _, c := range []byte(namespace) {
		if c < 0x20 || c > 0x7e {
			return fmt.Errorf("invalid namespace %q: only printable ASCII is allowed", excerpt(namespace))
		}
	}
	return nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Namespace is the namespace the client works in.
func (c *Client) Namespace() string { return c.namespace }

// RegisteredWorkflow is a stored workflow version.
type RegisteredWorkflow struct {
	// Definition is the normalized definition (defaults filled in, tasks and
	// dependencies sorted).
	Definition WorkflowDefinition
	// Version is the version hash the server computed.
	Version string
	// Sequence counts the workflow's versions, from 1.
	Sequence uint64
	// CreatedAt is when the version was first registered.
	CreatedAt time.Time
	// Latest reports whether this version is the workflow's latest.
	Latest bool
	// Created is true when this registration stored a new version (only
	// from RegisterWorkflow).
	Created bool
}

func workflowFromProto(workflow *pb.Workflow) RegisteredWorkflow {
	definition := WorkflowDefinition{
		Name:        workflow.GetDefinition().GetName(),
		Description: workflow.GetDefinition().GetDescription(),
		Concurrency: concurrencyFromProto(workflow.GetDefinition().GetConcurrency()),
	}
	for _, task := range workflow.GetDefinition().GetTasks() {
		definition.Tasks = append(definition.Tasks, taskDefinitionFromProto(task))
	}
	return RegisteredWorkflow{
		Definition: definition,
		Version:    workflow.GetVersion(),
		Sequence:   workflow.GetSequence(),
		CreatedAt:  timeFromProto(workflow.GetCreatedAt()),
		Latest:     workflow.GetLatest(),
	}
}

// RegisterWorkflow validates the workflow locally (with the server's
// messages) and registers its definition.
func (c *Client) RegisterWorkflow(ctx context.Context, workflow *Workflow) (RegisteredWorkflow, error) {
	if err := workflow.Validate(); err != nil {
		return RegisteredWorkflow{}, err
	}
	return c.RegisterDefinition(ctx, workflow.Definition())
}

// RegisterDefinition validates a definition locally and registers it.
func (c *Client) RegisterDefinition(ctx context.Context, definition WorkflowDefinition) (RegisteredWorkflow, error) {
	if err := definition.Validate(); err != nil {
		return RegisteredWorkflow{}, err
	}
	response, err := c.workflows.RegisterWorkflow(ctx, &pb.RegisterWorkflowRequest{Definition: definition.toProto()})
	if err != nil {
		return RegisteredWorkflow{}, err
	}
	registered := workflowFromProto(response.GetWorkflow())
	registered.Created = response.GetCreated()
	return registered, nil
}

// GetWorkflow returns the latest version of a workflow, or the version
// named (a version hash); NOT_FOUND when there is none.
func (c *Client) GetWorkflow(ctx context.Context, name, version string) (RegisteredWorkflow, error) {
	request := &pb.GetWorkflowRequest{Name: name}
	if version != "" {
		request.Selector = &pb.GetWorkflowRequest_Version{Version: version}
	}
	response, err := c.workflows.GetWorkflow(ctx, request)
	if err != nil {
		return RegisteredWorkflow{}, err
	}
	return workflowFromProto(response.GetWorkflow()), nil
}

// WorkflowPage is one page of workflows, ordered by name, each at its
// latest version.
type WorkflowPage struct {
	// Workflows are the page's workflows.
	Workflows []RegisteredWorkflow
	// NextPageToken fetches the next page; empty on the last.
	NextPageToken string
}

// ListWorkflows lists the namespace's workflows; pageSize 0 means 100, and
// pageToken is the previous page's NextPageToken (empty for the first).
func (c *Client) ListWorkflows(ctx context.Context, pageSize uint32, pageToken string) (WorkflowPage, error) {
	response, err := c.workflows.ListWorkflows(ctx, &pb.ListWorkflowsRequest{PageSize: pageSize, PageToken: pageToken})
	if err != nil {
		return WorkflowPage{}, err
	}
	page := WorkflowPage{NextPageToken: response.GetNextPageToken()}
	for _, workflow := range response.GetWorkflows() {
		page.Workflows = append(page.Workflows, workflowFromProto(workflow))
	}
	return page, nil
}

// StartOptions are the optional parts of a StartRun.
type StartOptions struct {
	// IdempotencyKey makes a repeated identical start return the first run.
	IdempotencyKey string
	// WorkflowVersion pins a version; empty means the latest.
	WorkflowVersion string
}

// StartedRun identifies a started (or existing) run.
type StartedRun struct {
	// RunID is the run's id.
	RunID string
	// WorkflowVersion is the version the run is pinned to.
	WorkflowVersion string
	// Created is false when an idempotency key matched an existing run.
	Created bool
}

// StartRun starts a run of workflow with input, which must encode as a
// JSON object (a map, a struct, json.RawMessage; nil means {}).
func (c *Client) StartRun(ctx context.Context, workflow string, input any, options ...StartOptions) (StartedRun, error) {
	var option StartOptions
	if len(options) > 0 {
		option = options[0]
	}
	text := json.RawMessage("{}")
	if input != nil {
		encoded, err := encodeJSON(input)
		if err != nil {
			return StartedRun{}, fmt.Errorf("the input cannot be encoded as JSON: %w", err)
		}
		text = encoded
	}
	response, err := c.runs.StartRun(ctx, &pb.StartRunRequest{
		WorkflowName:     workflow,
		WorkflowVersion:  option.WorkflowVersion,
		InputContextJson: string(text),
		IdempotencyKey:   option.IdempotencyKey,
	})
	if err != nil {
		return StartedRun{}, err
	}
	return StartedRun{RunID: response.GetRunId(), WorkflowVersion: response.GetWorkflowVersion(), Created: response.GetCreated()}, nil
}

// GetRunOptions are the optional parts of a GetRun: which instances of
// each mapped task are listed in its TaskRun.Instances (InstanceCounts
// count all of them either way).
type GetRunOptions struct {
	// InstancesFrom is the element index of the first instance listed under
	// each mapped task (0, the default, is the first).
	InstancesFrom uint32
	// MaxInstances lists at most this many instances under each mapped task
	// (0 lists none); nil sets no limit of the caller's own. The server lists
	// no more than fit in one answer either way, the same number under every
	// mapped task.
	MaxInstances *uint32
}

// GetRun returns a run with its tasks, attempts, conflicts and context.
// Without options a mapped task's Instances are all that fit in one answer.
func (c *Client) GetRun(ctx context.Context, runID string, options ...GetRunOptions) (*Run, error) {
	var option GetRunOptions
	if len(options) > 0 {
		option = options[0]
	}
	response, err := c.runs.GetRun(ctx, &pb.GetRunRequest{
		RunId:         runID,
		InstancesFrom: option.InstancesFrom,
		MaxInstances:  option.MaxInstances,
	})
	if err != nil {
		return nil, err
	}
	return runFromProto(response.GetRun()), nil
}

// ListRunsOptions filter and page ListRuns.
type ListRunsOptions struct {
	// WorkflowName keeps runs of this workflow only.
	WorkflowName string
	// Status keeps runs with this status only.
	Status RunStatus
	// PageSize is the page's size: 0 means 100, at most 1000.
	PageSize uint32
	// PageToken is the previous page's NextPageToken.
	PageToken string
}

// RunPage is one page of runs, newest first, without tasks.
type RunPage struct {
	// Runs are the page's runs.
	Runs []*Run
	// NextPageToken fetches the next page; empty on the last.
	NextPageToken string
}

// ListRuns lists runs of the namespace, newest first.
func (c *Client) ListRuns(ctx context.Context, options ListRunsOptions) (RunPage, error) {
	response, err := c.runs.ListRuns(ctx, &pb.ListRunsRequest{
		WorkflowName: options.WorkflowName,
		Status:       options.Status.toProto(),
		PageSize:     options.PageSize,
		PageToken:    options.PageToken,
	})
	if err != nil {
		return RunPage{}, err
	}
	page := RunPage{NextPageToken: response.GetNextPageToken()}
	for _, run := range response.GetRuns() {
		page.Runs = append(page.Runs, runFromProto(run))
	}
	return page, nil
}

// CancelRun cancels a run that has not finished (FAILED_PRECONDITION for a
// finished one) and returns its status.
func (c *Client) CancelRun(ctx context.Context, runID string) (RunStatus, error) {
	response, err := c.runs.CancelRun(ctx, &pb.CancelRunRequest{RunId: runID})
	if err != nil {
		return "", err
	}
	return runStatusFromProto(response.GetStatus()), nil
}

// Executor is an executor connected to the server.
type Executor struct {
	// ExecutorID is the id of its connection.
	ExecutorID string
	// Name is its name.
	Name string
	// InstanceID is its stable instance id.
	InstanceID string
	// Handlers are the handlers it serves.
	Handlers []string
	// Capacity is its maximum attempts in flight.
	Capacity uint32
	// InFlightAttemptIDs are the attempts it runs now.
	InFlightAttemptIDs []string
	// Labels are its labels.
	Labels map[string]string
}

// ListExecutors lists the executors connected in the namespace.
func (c *Client) ListExecutors(ctx context.Context) ([]Executor, error) {
	response, err := c.executors.ListExecutors(ctx, &pb.ListExecutorsRequest{})
	if err != nil {
		return nil, err
	}
	var executors []Executor
	for _, executor := range response.GetExecutors() {
		executors = append(executors, Executor{
			ExecutorID:         executor.GetExecutorId(),
			Name:               executor.GetName(),
			InstanceID:         executor.GetInstanceId(),
			Handlers:           executor.GetHandlers(),
			Capacity:           executor.GetMaxConcurrentAttempts(),
			InFlightAttemptIDs: executor.GetInFlightAttemptIds(),
			Labels:             executor.GetLabels(),
		})
	}
	return executors, nil
}

// Wait follows the run until it ends and returns it. It survives
// disconnections and server restarts (it follows on from the last event
// seen); it stops early only when ctx ends or the server refuses for good
// (for example NOT_FOUND).
func (c *Client) Wait(ctx context.Context, runID string) (*Run, error) {
	for _, err := range c.WatchRun(ctx, runID, 0) {
		if err != nil {
			return nil, err
		}
	}
	backoff := newBackoff(rewatchMin, rewatchMax)
	for {
		run, err := c.GetRun(ctx, runID)
		if err == nil || !isTransient(err) || ctx.Err() != nil {
			return run, err
		}
		if err := backoff.wait(ctx); err != nil {
			return nil, err
		}
	}
}
