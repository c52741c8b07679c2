//go:build !linux

package tributary

import "net"

// wrapConn leaves connections as they are where TCP_QUICKACK does not
// exist.
func wrapConn(conn net.Conn) net.Conn { return conn }
