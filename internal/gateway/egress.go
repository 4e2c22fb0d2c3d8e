package gateway

// Egress proxy: a `tunnelProtocol: connect` bind accepts HTTP CONNECT and
// hands each tunnel to the top-level gateway listening on the requested
// port. Its protocol: TLS listeners never terminate TLS: they read the
// ClientHello's SNI, pick a tcpRoute by it, and splice the bytes to the
// SNI host on the requested port (backends: - dynamic: {}), so the client
// verifies the real server's certificate end to end.
//
// What keeps this from being an open proxy, in the order it is checked:
//
//   - the CONNECT port must be a gateways: entry's port (else 404, as
//     agentgateway's BindNotFound);
//   - the CONNECT host must be a name (not an IP) that a tcpRoute of a
//     listener on that port allows (else 403, before the tunnel opens;
//     agentgateway opens it and closes it after the ClientHello — refusing
//     first is stricter and tells the client why);
//   - the ClientHello must carry an SNI equal to the CONNECT host
//     (agentgateway ignores the CONNECT host and dials the SNI; requiring
//     both to agree means the name checked is the name dialled, whatever
//     the client puts where);
//   - the dial goes to that name on that port only, and the resolved
//     address must pass egressPolicy: link-local and cloud metadata
//     (outbound.AlwaysRefused) and loopback (the gateway's own admin port)
//     are refused. Other backends of the gateway are dialled without a
//     policy because the operator wrote their addresses; here the
//     operator wrote names whose DNS someone else may control.
//
// Refusals after the tunnel opened close it; every tunnel is one
// access-log line (method CONNECT) with the reason when refused.
//
// A CONNECT to the port of a mode: internal bind instead hands the
// tunnel to that bind, which terminates TLS (mitm.go).

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// egressGateway is one gateways: entry: its passthrough listeners, most
// specific hostname first.
type egressGateway struct {
	name      string
	listeners []*egressListener
}

type egressListener struct {
	name     string // "<gateway>/<listener>", as routes and logs name it
	hostname string // "" any, "*.suffix" or exact
	routes   []*egressRoute
}

type egressRoute struct {
	name      string
	hostnames []string // lower case; empty matches any name
}

// clientHelloTimeout bounds how long an opened tunnel may wait for the
// client's ClientHello.
const clientHelloTimeout = 10 * time.Second

// egressPolicy refuses what a listed hostname must never resolve to:
// outbound.AlwaysRefused (link-local, cloud metadata) and loopback, where
// the gateway's own admin listener runs. Private ranges (a corporate
// mirror, a tailnet's 100.64.0.0/10) stay reachable: the hostname was
// listed by the operator.
var egressPolicy = func() *outbound.Policy {
	p := &outbound.Policy{}
	for _, r := range outbound.NonPublic {
		if !r.Prefix.Addr().IsLoopback() {
			p.Allow = append(p.Allow, r.Prefix)
		}
	}
	return p
}()

func defaultEgressDial(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := egressPolicy.Dialer().DialContext(ctx, network, addr)
	if re := (*outbound.RefusedError)(nil); errors.As(err, &re) {
		why, _, _ := strings.Cut(re.Why, ";") // drop the hint about a flag the gateway does not have
		return nil, fmt.Errorf("%s resolves to %s, which is %s: tunnels never reach it", addr, re.Addr, why)
	}
	return c, err
}

// compileEgress builds the gateways: entries tunnel binds hand to, keyed
// by port. config.checkEgress has checked names, protocols and refs.
func compileEgress(f *config.File) map[int]*egressGateway {
	out := map[int]*egressGateway{}
	byRef := map[string][]*egressListener{}
	for _, g := range f.Gateways {
		eg := &egressGateway{name: g.Name}
		for li, l := range g.Listeners {
			name := l.Name
			if name == "" {
				name = fmt.Sprintf("listener%d", li)
			}
			h := strings.ToLower(l.Hostname)
			if h == "*" {
				h = ""
			}
			el := &egressListener{name: g.Name + "/" + name, hostname: h}
			eg.listeners = append(eg.listeners, el)
			byRef[el.name] = []*egressListener{el}
			byRef[g.Name] = append(byRef[g.Name], el)
		}
		sort.SliceStable(eg.listeners, func(i, j int) bool {
			return hostRank(eg.listeners[i].hostname) > hostRank(eg.listeners[j].hostname)
		})
		out[g.Port] = eg
	}
	for ri, r := range f.TCPRoutes {
		name := r.Name
		if name == "" {
			name = fmt.Sprintf("tcpRoutes[%d]", ri)
		}
		er := &egressRoute{name: name}
		for _, h := range r.Hostnames {
			er.hostnames = append(er.hostnames, strings.ToLower(h))
		}
		for _, ref := range r.Gateways.Refs {
			for _, el := range byRef[ref] {
				el.routes = append(el.routes, er)
			}
		}
	}
	return out
}

// match picks the listener serving host, then its route as agentgateway
// does: an exact hostname first, then wildcards from the most specific
// suffix ("*.a.b.c" before "*.b.c"), then a route without hostnames.
func (eg *egressGateway) match(host string) (*egressListener, *egressRoute) {
	for _, el := range eg.listeners {
		if !hostMatches(el.hostname, host) {
			continue
		}
		for _, cand := range hostCandidates(host) {
			for _, r := range el.routes {
				if r.has(cand) {
					return el, r
				}
			}
		}
		return el, nil
	}
	return nil, nil
}

// hostCandidates are the route hostnames that match host, most specific
// first: host, "*.<each parent>", and "" (a route with no hostnames).
func hostCandidates(host string) []string {
	c := []string{host}
	for i := 0; i < len(host); i++ {
		if host[i] == '.' {
			c = append(c, "*"+host[i:])
		}
	}
	return append(c, "")
}

func (r *egressRoute) has(cand string) bool {
	if cand == "" {
		return len(r.hostnames) == 0
	}
	for _, h := range r.hostnames {
		if h == cand {
			return true
		}
	}
	return false
}

// serveConnect runs one request on a tunnel bind. It returns when the
// tunnel closes; the caller logs the request.
func (g *Gateway) serveConnect(w *statusWriter, r *http.Request, ri *requestInfo, s *snapshot, open *pipe.Group) {
	if r.Method != http.MethodConnect {
		ri.denyReason = "not a CONNECT request on a tunnel bind"
		w.Header().Set("Allow", http.MethodConnect)
		http.Error(w, "this port is an HTTP CONNECT proxy (tunnelProtocol: connect): send CONNECT host:port", http.StatusMethodNotAllowed)
		return
	}
	host, portText, err := net.SplitHostPort(r.Host)
	port, perr := strconv.Atoi(portText)
	if err != nil || perr != nil || host == "" {
		ri.denyReason = "CONNECT target is not host:port"
		http.Error(w, "CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	eg := s.egress[port]
	if bt := s.binds[port]; eg == nil && bt != nil && bt.internal {
		g.tunnelToInternal(w, r, ri, port)
		return
	}
	if eg == nil {
		ri.denyReason = fmt.Sprintf("no gateway on port %d", port)
		http.Error(w, fmt.Sprintf("no gateway accepts tunnels to port %d", port), http.StatusNotFound)
		return
	}
	if _, err := netip.ParseAddr(host); err == nil {
		ri.denyReason = "CONNECT to an IP address (routes match TLS server names)"
		http.Error(w, "CONNECT to a hostname, not an IP address", http.StatusForbidden)
		return
	}
	el, rt := eg.match(host)
	if el != nil {
		ri.listener = el.name
	}
	if rt == nil {
		ri.denyPolicy = "tcpRoutes"
		ri.denyReason = fmt.Sprintf("host %s is not allowed by any tcpRoute", host)
		http.Error(w, fmt.Sprintf("tunnels to %s are not allowed", host), http.StatusForbidden)
		return
	}
	ri.route = rt.name
	target := net.JoinHostPort(host, portText)
	ri.backend = "dynamic/" + target

	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ri.upstreamErr = err
		http.Error(w, "cannot open a tunnel on this connection", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	w.status = http.StatusOK
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		ri.upstreamErr = err
		return
	}
	// Bytes the client sent right after CONNECT may already be buffered.
	var client io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		head, _ := brw.Reader.Peek(n)
		client = io.MultiReader(bytes.NewReader(bytes.Clone(head)), conn)
	}
	_ = conn.SetReadDeadline(time.Now().Add(clientHelloTimeout))
	sni, hello, err := readClientHello(client)
	_ = conn.SetReadDeadline(time.Time{})
	switch {
	case err != nil:
		ri.denyReason = "tunnel closed: no TLS ClientHello (" + err.Error() + ")"
		return
	case sni == "":
		ri.denyReason = "tunnel closed: the ClientHello has no SNI"
		return
	case strings.ToLower(strings.TrimSuffix(sni, ".")) != host:
		ri.denyPolicy = "tcpRoutes"
		ri.denyReason = fmt.Sprintf("tunnel closed: SNI %q does not match the CONNECT host %s", sni, host)
		return
	}
	dial := g.opts.egressDial
	if dial == nil {
		dial = defaultEgressDial
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	up, err := dial(ctx, "tcp", target)
	cancel()
	if err != nil {
		ri.upstreamErr = err
		ri.denyReason = "tunnel closed: dial failed"
		return
	}
	if _, err := up.Write(hello); err != nil {
		up.Close()
		ri.upstreamErr = err
		return
	}
	// The group is the bind's: stopping the bind cuts the tunnel.
	open.Join(readerConn{Conn: conn, r: client}, up)
}

// readerConn is the client side of a tunnel: conn, read through r (which
// replays what was buffered before the tunnel began).
type readerConn struct {
	net.Conn
	r io.Reader
}

func (c readerConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// errSniffed ends the handshake once the ClientHello was read.
var errSniffed = errors.New("sniffed")

// readClientHello reads the client's first TLS handshake message and
// returns its SNI and the bytes read, to be replayed to the server. It
// uses crypto/tls's own parser on a connection that cannot write, so no
// byte reaches the client.
func readClientHello(r io.Reader) (string, []byte, error) {
	var buf bytes.Buffer
	var sni string
	var got bool
	srv := tls.Server(readOnlyConn{r: io.TeeReader(io.LimitReader(r, 64<<10), &buf)}, &tls.Config{
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			sni, got = hi.ServerName, true
			return nil, errSniffed
		},
	})
	err := srv.Handshake()
	if !got {
		if err == nil {
			err = errors.New("handshake ended without a ClientHello")
		}
		return "", nil, err
	}
	return sni, buf.Bytes(), nil
}

// readOnlyConn is the net.Conn readClientHello's tls.Server reads from:
// writes (an alert) are dropped.
type readOnlyConn struct {
	net.Conn // nil: only Read and Write are called
	r        io.Reader
}

func (c readOnlyConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c readOnlyConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (c readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (c readOnlyConn) SetWriteDeadline(time.Time) error { return nil }
func (c readOnlyConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c readOnlyConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c readOnlyConn) Close() error                     { return nil }
