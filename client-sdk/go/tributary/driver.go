package tributary

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"time"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// initialReceiveBytes is the executor stream's receive limit until the
	// server states its own in Registered: room for the server's default
	// 16 MiB contexts with their envelope.
	initialReceiveBytes = 64 << 20
	// closeGrace is how long a finished worker waits for the server to
	// close the stream after its own side is closed.
	closeGrace = time.Second
	// registrationTimeout bounds the wait for Registered on a new stream.
	registrationTimeout = 15 * time.Second
	// maxRefsPerFetch is the protocol's limit of refs in one FetchValues.
	maxRefsPerFetch = 10_000
)

// driver is the one goroutine that owns a worker's state: the attempts it
// runs, the results not yet acknowledged, the value cache and the current
// stream. Attempts run in goroutines of their own and hand their results
// back over a channel; the stream's send side belongs to one writer
// goroutine fed by a queue (see session).
type driver struct {
	w       *Worker
	client  pb.ExecutorServiceClient
	running map[string]*runningAttempt
	unacked map[string]*pendingResult
	results chan attemptResult
	cache   *valueCache
	fetches []*fetchRequest
	drain   *drainState
	// maxMessageBytes and maxContextBytes are the server's limits from
	// Registered; receiveBytes is the stream's receive limit.
	maxMessageBytes uint64
	maxContextBytes uint64
	receiveBytes    int
	// attempts is the parent of every attempt's context; it ends with an
	// abort.
	attempts context.Context
}

type runningAttempt struct {
	assign *pb.Assign
	cancel context.CancelCauseFunc
	// waiting is set while the attempt's referenced values are fetched.
	waiting *valueWait
	handler HandlerFunc
}

type valueWait struct {
	values  map[string]json.RawMessage
	pending int
	missing []string
	// abandoned is set when the attempt ended while its values were
	// fetched; the answers still come, in order, and are only cached.
	abandoned bool
}

// fetchRequest is one FetchValues in flight; Values answers come in the
// order asked.
type fetchRequest struct {
	attempt *runningAttempt
	refs    []*pb.ValueRef
}

type pendingResult struct {
	runID    string
	message  *pb.ConnectRequest
	produced map[string]json.RawMessage
}

type attemptResult struct {
	attemptID string
	message   *pb.ConnectRequest
	produced  map[string]json.RawMessage
}

type drainState struct {
	waiters []chan ShutdownReport
	timer   *time.Timer
	// phase 0: draining; 1: the deadline passed and running attempts were
	// cancelled; 2: their handlers did not return in time and are left.
	phase     int
	cancelled int
}

type sessionEnd int

const (
	sessionLost sessionEnd = iota
	sessionFinished
	sessionAborted
)

func newDriver(w *Worker, conn *grpc.ClientConn) *driver {
	d := &driver{
		w:               w,
		client:          pb.NewExecutorServiceClient(conn),
		running:         map[string]*runningAttempt{},
		unacked:         map[string]*pendingResult{},
		results:         make(chan attemptResult, 256),
		maxMessageBytes: 4 << 20,
		receiveBytes:    initialReceiveBytes,
	}
	if w.options.ValueCacheBytes > 0 {
		d.cache = newValueCache(w.options.ValueCacheBytes)
	}
	return d
}

func (d *driver) run(ctx context.Context) {
	d.attempts = ctx
	backoff := newBackoff(d.w.options.ReconnectMin, d.w.options.ReconnectMax)
	for {
		if d.drainComplete() {
			d.finish()
			return
		}
		switch d.session(ctx, backoff) {
		case sessionFinished, sessionAborted:
			d.finish()
			return
		}
		d.w.publish(func(status *WorkerStatus) { status.Connected = false })
		if d.cache != nil {
			// The next stream starts with nothing the server gave this one.
			d.cache.clear()
		}
		wait := time.NewTimer(backoff.delay())
	waiting:
		for {
			if d.drainComplete() {
				wait.Stop()
				d.finish()
				return
			}
			select {
			case <-wait.C:
				break waiting
			case result := <-d.results:
				d.record(result)
			case request := <-d.w.control:
				d.startDrain(request, nil)
			case <-d.drainTimer():
				d.drainDeadline()
			case <-ctx.Done():
				wait.Stop()
				d.finish()
				return
			}
		}
	}
}

// session runs one stream: connect, register, serve until it breaks.
func (d *driver) session(ctx context.Context, backoff *backoff) sessionEnd {
	streamCtx, cancel := context.WithCancel(ctx)
	// A server that accepts connections but never answers (hung, stopped)
	// must not hold the worker: give up on this stream and try again.
	registrationTimer := time.AfterFunc(registrationTimeout, cancel)
	defer registrationTimer.Stop()
	stream, err := d.client.Connect(streamCtx, grpc.MaxCallRecvMsgSize(d.receiveBytes))
	if err != nil {
		cancel()
		d.w.logger.Debug("cannot open the executor stream", "error", err)
		return sessionLost
	}
	queue := newSendQueue()
	incoming := make(chan *pb.ConnectResponse, 64)
	received := make(chan error, 1)
	writerDone := make(chan struct{})
	readerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for {
			message, ok := queue.pop(streamCtx)
			if !ok {
				if streamCtx.Err() == nil {
					_ = stream.CloseSend()
				}
				return
			}
			if err := stream.Send(message); err != nil {
				// Recv reports why the stream broke.
				return
			}
		}
	}()
	go func() {
		defer close(readerDone)
		for {
			message, err := stream.Recv()
			if err != nil {
				received <- err
				return
			}
			select {
			case incoming <- message:
			case <-streamCtx.Done():
				return
			}
		}
	}()
	defer func() {
		cancel()
		queue.close()
		<-writerDone
		<-readerDone
	}()

	queue.push(d.register())
	var registered *pb.Registered
	for registered == nil {
		select {
		case message := <-incoming:
			registered = message.GetRegistered()
			if registered == nil {
				d.w.logger.Warn("the server's first message was not Registered; reconnecting")
				return sessionLost
			}
		case err := <-received:
			if status.Code(err) == codes.InvalidArgument {
				// A refused registration will be refused again; say so loudly.
				d.w.logger.Error("the server refused the registration; retrying", "error", err)
			} else {
				d.w.logger.Debug("the executor stream broke before registration", "error", err)
			}
			return sessionLost
		case result := <-d.results:
			d.record(result)
		case request := <-d.w.control:
			d.startDrain(request, nil)
		case <-d.drainTimer():
			d.drainDeadline()
		case <-ctx.Done():
			return sessionAborted
		}
	}
	if !registrationTimer.Stop() {
		return sessionLost
	}
	backoff.reset()
	d.registered(registered)
	if limit := registered.GetMaxMessageBytes(); limit > uint64(d.receiveBytes) && limit < 1<<31 {
		// The stream's receive limit is fixed when it opens: reopen at once
		// with the server's.
		d.receiveBytes = int(limit)
		d.w.logger.Info("reconnecting with the server's larger message limit", "bytes", limit)
		return sessionLost
	}
	for _, id := range sortedKeys(d.unacked) {
		queue.push(d.unacked[id].message)
	}
	d.fetches = d.liveFetches()
	for _, fetch := range d.fetches {
		queue.push(fetchValuesRequest(fetch))
	}
	interval := d.w.options.HeartbeatInterval
	if interval <= 0 {
		interval = time.Duration(max(registered.GetHeartbeatIntervalMs(), 1)) * time.Millisecond
	}
	lease := time.Duration(max(registered.GetLeaseTimeoutMs(), 1)) * time.Millisecond
	heartbeat := time.NewTicker(interval)
	defer heartbeat.Stop()
	lastAck := time.Now()
	for {
		if d.drainComplete() {
			queue.close()
			grace := time.NewTimer(closeGrace)
			defer grace.Stop()
			for {
				select {
				case <-incoming:
				case <-received:
					return sessionFinished
				case <-grace.C:
					return sessionFinished
				}
			}
		}
		select {
		case message := <-incoming:
			if message.GetHeartbeatAck() != nil {
				lastAck = time.Now()
			} else {
				d.handle(message, queue)
			}
		case err := <-received:
			d.w.logger.Warn("the executor stream broke; reconnecting", "error", err)
			return sessionLost
		case <-heartbeat.C:
			if time.Since(lastAck) > lease {
				d.w.logger.Warn("no heartbeat acknowledgement within the lease; cancelling attempts and reconnecting")
				d.cancelAll("the worker lost its lease on the server", nil)
				return sessionLost
			}
			queue.push(&pb.ConnectRequest{Message: &pb.ConnectRequest_Heartbeat{Heartbeat: &pb.Heartbeat{}}})
		case result := <-d.results:
			queue.push(d.record(result))
		case request := <-d.w.control:
			d.startDrain(request, queue)
		case <-d.drainTimer():
			d.drainDeadline()
		case <-ctx.Done():
			return sessionAborted
		}
	}
}

func (d *driver) register() *pb.ConnectRequest {
	held := make([]string, 0, len(d.running)+len(d.unacked))
	for id := range d.running {
		held = append(held, id)
	}
	for id := range d.unacked {
		if _, running := d.running[id]; !running {
			held = append(held, id)
		}
	}
	sort.Strings(held)
	capacity := d.w.options.Capacity
	if d.drain != nil {
		capacity = 0
	}
	var cacheBytes uint64
	if d.cache != nil {
		cacheBytes = uint64(d.cache.capacity)
	}
	return &pb.ConnectRequest{Message: &pb.ConnectRequest_Register{Register: &pb.Register{
		Name:                  d.w.options.Name,
		InstanceId:            d.w.options.InstanceID,
		Handlers:              d.w.Handlers(),
		MaxConcurrentAttempts: capacity,
		Labels:                d.w.options.Labels,
		HeldAttemptIds:        held,
		ValueCacheBytes:       cacheBytes,
	}}}
}

func (d *driver) registered(registered *pb.Registered) {
	if registered.GetMaxMessageBytes() > 0 {
		d.maxMessageBytes = registered.GetMaxMessageBytes()
	}
	d.maxContextBytes = registered.GetMaxContextBytes()
	d.w.logger.Debug("registered", "executor_id", registered.GetExecutorId())
	d.w.publish(func(status *WorkerStatus) {
		status.Connected = true
		status.Registrations++
		status.ExecutorID = registered.GetExecutorId()
	})
}

func (d *driver) handle(message *pb.ConnectResponse, queue *sendQueue) {
	switch message := message.GetMessage().(type) {
	case *pb.ConnectResponse_Assign:
		d.assign(message.Assign, queue)
	case *pb.ConnectResponse_Cancel:
		d.cancel(message.Cancel.GetAttemptId(), message.Cancel.GetReason(), queue)
	case *pb.ConnectResponse_ResultAck:
		d.acknowledged(message.ResultAck)
	case *pb.ConnectResponse_Values:
		d.valuesArrived(message.Values, queue)
	case *pb.ConnectResponse_ForgetRun:
		if d.cache != nil {
			d.cache.forgetRun(message.ForgetRun.GetRunId())
			d.publishCounts()
		}
	}
}

func (d *driver) acknowledged(ack *pb.ResultAck) {
	id := ack.GetAttemptId()
	pending, ok := d.unacked[id]
	if !ok {
		return
	}
	delete(d.unacked, id)
	switch ack.GetDisposition() {
	case pb.ResultDisposition_RESULT_DISPOSITION_ACCEPTED:
		if d.cache != nil {
			for key, value := range pending.produced {
				d.cache.put(valueRef{runID: pending.runID, writer: id, key: key}, value)
			}
		}
	case pb.ResultDisposition_RESULT_DISPOSITION_REJECTED:
		d.w.logger.Warn("the server rejected a result; the attempt is recorded as failed", "attempt_id", id, "reason", ack.GetReason())
	case pb.ResultDisposition_RESULT_DISPOSITION_STALE:
		d.w.logger.Info("a result came too late (the attempt is no longer current); dropped", "attempt_id", id)
	case pb.ResultDisposition_RESULT_DISPOSITION_NOT_HELD:
		d.w.logger.Info("the server says this worker does not hold the attempt; result dropped", "attempt_id", id)
	default:
		d.w.logger.Warn("unknown result disposition; result dropped", "attempt_id", id, "disposition", ack.GetDisposition().String())
	}
	d.publishCounts()
}

func (d *driver) cancel(attemptID, reason string, queue *sendQueue) {
	attempt, ok := d.running[attemptID]
	if !ok {
		return
	}
	d.w.logger.Debug("cancelling", "attempt_id", attemptID, "reason", reason)
	if attempt.waiting != nil {
		attempt.waiting.abandoned = true
		d.report(queue, failedResult(attemptID, "cancelled: "+reason, false))
		return
	}
	attempt.cancel(errors.New(reason))
}

func (d *driver) cancelAll(reason string, queue *sendQueue) int {
	count := 0
	for _, id := range sortedKeys(d.running) {
		d.cancel(id, reason, queue)
		count++
	}
	return count
}

func (d *driver) startDrain(request shutdownRequest, queue *sendQueue) {
	if d.drain != nil {
		// A second request waits for the first one's end.
		d.drain.waiters = append(d.drain.waiters, request.done)
		return
	}
	d.drain = &drainState{waiters: []chan ShutdownReport{request.done}, timer: time.NewTimer(time.Until(request.deadline))}
	if queue != nil {
		queue.push(&pb.ConnectRequest{Message: &pb.ConnectRequest_CapacityChanged{CapacityChanged: &pb.CapacityChanged{MaxConcurrentAttempts: 0}}})
	}
}

func (d *driver) drainTimer() <-chan time.Time {
	if d.drain == nil || d.drain.phase >= 2 {
		return nil
	}
	return d.drain.timer.C
}

func (d *driver) drainDeadline() {
	if d.drain.phase == 0 {
		d.drain.phase = 1
		d.drain.cancelled = d.cancelAll("the worker is shutting down", nil)
		d.drain.timer.Reset(d.w.options.CancelGrace)
		return
	}
	d.drain.phase = 2
	if len(d.running) > 0 {
		d.w.logger.Warn("handlers did not return after their cancellation; leaving them", "attempts", len(d.running))
	}
}

// drainComplete: once shutting down, nothing runs and every result is
// acknowledged; after the deadline, nothing runs; after the grace, now.
func (d *driver) drainComplete() bool {
	if d.drain == nil {
		return false
	}
	switch d.drain.phase {
	case 0:
		return len(d.running) == 0 && len(d.unacked) == 0
	case 1:
		return len(d.running) == 0
	default:
		return true
	}
}

func (d *driver) finish() {
	for _, attempt := range d.running {
		if attempt.cancel != nil {
			attempt.cancel(errors.New("the worker stopped"))
		}
	}
	if d.drain != nil {
		d.drain.timer.Stop()
		for _, waiter := range d.drain.waiters {
			waiter <- ShutdownReport{Drained: d.drain.phase == 0, CancelledAttempts: d.drain.cancelled}
		}
	}
	d.w.publish(func(status *WorkerStatus) { status.Connected = false })
}

func (d *driver) publishCounts() {
	running, unacked, cached := len(d.running), len(d.unacked), 0
	if d.cache != nil {
		cached = d.cache.len()
	}
	d.w.publish(func(status *WorkerStatus) {
		status.Running = running
		status.Unacknowledged = unacked
		status.CachedValues = cached
	})
}

func sortedKeys[V any](values map[string]V) []string {
	keys := make([]string, 0, len(values))
	for key := range values {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	return keys
}
