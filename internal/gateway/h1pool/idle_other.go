//go:build !unix

package h1pool

import "net"

// stillIdle cannot peek here; a closed connection is caught by the retry.
func stillIdle(net.Conn) bool { return true }
