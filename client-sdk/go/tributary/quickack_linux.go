package tributary

import (
	"net"
	"syscall"
)

// quickAckConn acknowledges what it reads at once. A server whose sockets
// lack TCP_NODELAY holds a small write (the next Assign) until its previous
// one (the ResultAck) is acknowledged, and Linux delays that
// acknowledgement by up to 40 ms when the reader has nothing to send back:
// every dispatch would wait 40 ms. TCP_QUICKACK is not sticky, so it is set
// again after each read.
type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func wrapConn(conn net.Conn) net.Conn {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return conn
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return conn
	}
	return &quickAckConn{TCPConn: tcp, raw: raw}
}

func (c *quickAckConn) Read(buffer []byte) (int, error) {
	n, err := c.TCPConn.Read(buffer)
	if n > 0 {
		_ = c.raw.Control(func(fd uintptr) {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
		})
	}
	return n, err
}
