package sandbox_test

import (
	"bufio"
	"context"
	"net/netip"
	"testing"
	"time"
	"net/http"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

func TestDebugSubnet(t *testing.T) {
	sb := sharedSandbox(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "dbg", AcceptRoutes: true})
	ctx, cancel := context.WithTimeout(ctxT(t), 8*time.Second)
	defer cancel()
	c, err := n.DialTCP(ctx, netip.MustParseAddrPort("192.0.2.10:80"))
	t.Logf("XXX DIAL RESULT %v", err)
	if err != nil { return }
	c.SetDeadline(time.Now().Add(5*time.Second))
	_, err = c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	t.Logf("XXX write %v", err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	t.Logf("XXX resp %v %v", resp, err)
}
