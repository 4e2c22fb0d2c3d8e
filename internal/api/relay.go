package api

import (
	"io"
	"net"
	"net/http"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"

	"github.com/tailgate-dev/tailgate/internal/errcode"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// RelayProtocol is the Upgrade token of GET /v1/runs/{id}/relay.
const RelayProtocol = "tailgate-relay"

// RelayTokenHeader carries a relayed run's relay token.
const RelayTokenHeader = "X-Tailgate-Relay-Token"

// relayRun is GET /v1/runs/{id}/relay with Upgrade: tailgate-relay: one
// connection from a runner's host to the run's proxy on this server, for a
// run whose node must stay on the servers (headscale). It takes the
// caller's tailgate token (the run's org) and the run's relay token,
// returned once when the run started; after 101 the connection is the
// proxy's, byte for byte.
func (s *server) relayRun(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	if err := s.runsAvailable(); err != nil {
		return err
	}
	id, err := runIDParam(r)
	if err != nil {
		return err
	}
	if r.Header.Get("Upgrade") != RelayProtocol {
		return apiErr(errcode.BadInput, "the relay needs Connection: Upgrade and Upgrade: %s", RelayProtocol)
	}
	addr, err := s.runs.RelayAddr(r.Context(), p.OrgID, id, r.Header.Get(RelayTokenHeader))
	if err != nil {
		return runError(err, "", id)
	}
	proxy, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return apiErr(errcode.RunEnded, "run %s's proxy is closed", id)
	}
	conn, rw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		proxy.Close()
		return apiErr(errcode.BadInput, "the relay needs HTTP/1.1")
	}
	conn.SetDeadline(time.Time{})
	io.WriteString(conn, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+RelayProtocol+"\r\n\r\n")
	// Bytes the client sent after its request are the proxy's.
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		proxy.Write(b)
	}
	pipe.Join(conn, proxy)
	return nil
}
