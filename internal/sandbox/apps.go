package sandbox

import (
	"html/template"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// appTable maps subnet addresses behind the router to in-process servers.
// The router's fallback TCP handler consults it for every connection that
// no tailnet listener of the router took; an address with no app gets a
// reset, like a closed port. Nothing is ever forwarded to the host network
// (tsnet's default for a subnet router), which on a test machine may well
// use the same documentation ranges.
type appTable struct {
	mu      sync.RWMutex
	apps    map[netip.AddrPort]*connListener
	servers []*http.Server
}

// close stops every app server.
func (t *appTable) close() {
	t.mu.Lock()
	servers := t.servers
	t.servers = nil
	t.mu.Unlock()
	for _, srv := range servers {
		srv.Close()
	}
}

func newAppTable() *appTable { return &appTable{apps: map[netip.AddrPort]*connListener{}} }

func (t *appTable) fallback(src, dst netip.AddrPort) (func(net.Conn), bool) {
	t.mu.RLock()
	ln := t.apps[dst]
	t.mu.RUnlock()
	if ln == nil {
		return nil, true // intercepted with no handler: reset
	}
	return ln.deliver, true
}

// ServeSubnetApp serves h at addr, an address inside a subnet the router
// advertises. With tlsNames set it serves HTTPS with a self-signed
// certificate for those names.
func (s *Sandbox) ServeSubnetApp(addr netip.AddrPort, h http.Handler, tlsNames ...string) error {
	return s.site.ServeApp(addr, h, tlsNames...)
}

// serve starts srv on a listener fed with the connections to addr,
// replacing any app there before.
func (t *appTable) serve(addr netip.AddrPort, srv *http.Server) {
	ln := newConnListener(addr)
	t.mu.Lock()
	if old := t.apps[addr]; old != nil {
		old.Close()
	}
	t.apps[addr] = ln
	t.servers = append(t.servers, srv)
	t.mu.Unlock()
	if srv.TLSConfig != nil {
		go srv.ServeTLS(ln, "", "")
	} else {
		go srv.Serve(ln)
	}
}

func (s *Sandbox) addDemoApps() error {
	apps := []struct {
		addr  netip.AddrPort
		name  string
		tls   []string
		names []string
	}{
		{netip.AddrPortFrom(DemoAppIP, 80), DemoAppName, nil, nil},
		{netip.AddrPortFrom(DemoAppIP, 443), DemoAppName, []string{DemoAppName}, nil},
		{netip.AddrPortFrom(MismatchAppIP, 443), MismatchAppName, []string{"other.example"}, nil},
		{netip.AddrPortFrom(LegacyAppIP, 80), LegacyAppName, nil, nil},
	}
	for _, a := range apps {
		if err := s.ServeSubnetApp(a.addr, DemoApp(a.name), a.tls...); err != nil {
			return err
		}
	}
	s.site.AddName(DemoAppName, DemoAppIP)
	s.site.AddName(MismatchAppName, MismatchAppIP)
	s.site.AddName(LegacyAppName, LegacyAppIP)
	return nil
}

var demoPage = template.Must(template.New("demo").Parse(`<!doctype html>
<html><head><title>{{.Name}}</title></head>
<body>
<h1>` + DemoAppText + `</h1>
<p id="served-by">{{.Name}}</p>
<form method="get" action="/">
<input id="q" name="q" value="">
<button id="go" type="submit">Go</button>
</form>
{{if .Query}}<p id="echo">You said: {{.Query}}</p>{{end}}
</body></html>
`))

// DemoApp is the private demo web app: a page naming the server, with a
// small form so browser flows can fill and click, and the leak probe at
// ProbePath.
func DemoApp(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == ProbePath {
			serveProbe(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		demoPage.Execute(w, struct{ Name, Query string }{name, r.URL.Query().Get("q")})
	})
}

// connListener is a net.Listener fed by the router's fallback handler.
type connListener struct {
	*pipe.Listener
}

func newConnListener(addr netip.AddrPort) *connListener {
	return &connListener{pipe.NewListener(net.TCPAddrFromAddrPort(addr))}
}

// deliver hands c to the app and returns only when the app has closed it.
// It must not return earlier: netstack removes the subnet address from its
// stack when the flow handler returns, after which the router can no longer
// send from that address and the connection silently stalls.
func (l *connListener) deliver(c net.Conn) {
	hc := &heldConn{Conn: c, done: make(chan struct{})}
	if !l.Put(hc) {
		c.Close()
		return
	}
	<-hc.done
}

// heldConn reports when its user closes it.
type heldConn struct {
	net.Conn
	once sync.Once
	done chan struct{}
}

func (c *heldConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { close(c.done) })
	return err
}
