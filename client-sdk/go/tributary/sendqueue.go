package tributary

import (
	"context"
	"sync"

	pb "github.com/tributary-dev/tributary/client-sdk/go/gen/tributary/v1"
)

// sendQueue is the unbounded queue between the worker's driver, which must
// never block on the network, and the one writer goroutine that owns the
// stream's send side (grpc-go's Send is not safe for concurrent use).
type sendQueue struct {
	mu     sync.Mutex
	items  []*pb.ConnectRequest
	closed bool
	ready  chan struct{}
}

func newSendQueue() *sendQueue {
	return &sendQueue{ready: make(chan struct{}, 1)}
}

func (q *sendQueue) push(message *pb.ConnectRequest) {
	q.mu.Lock()
	if !q.closed {
		q.items = append(q.items, message)
	}
	q.mu.Unlock()
	q.signal()
}

// close lets the writer send what is queued, then half-close the stream.
func (q *sendQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *sendQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the next message; ok is false once the queue is closed and
// empty or ctx ended.
func (q *sendQueue) pop(ctx context.Context) (message *pb.ConnectRequest, ok bool) {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			message = q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return message, true
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil, false
		}
		select {
		case <-q.ready:
		case <-ctx.Done():
			return nil, false
		}
	}
}
