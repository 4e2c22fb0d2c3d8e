//go:build unix

package h1pool

import (
	"net"
	"syscall"
)

// stillIdle reports whether an idle connection can carry a request: the
// upstream has neither closed it nor sent anything unasked (an answer
// to no request must never be taken for the next one's). One
// non-blocking peek; connections without a file descriptor (a tailnet
// dialer's) are assumed idle and rely on the retry.
func stillIdle(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	idle := false
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		idle = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && idle
}
