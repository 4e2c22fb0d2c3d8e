package egress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"
	"github.com/tailgate-dev/tailgate/internal/target"
)

// Resolver answers names from the tailnet only (MagicDNS, then split DNS
// through the node). It must never consult the host resolver.
type Resolver interface {
	LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error)
}

// Dialer dials through the tailnet only; it returns an error (never falls
// back to the host network) for addresses the tailnet does not route,
// preferably wrapping [ErrNotViaTailnet].
type Dialer interface {
	DialContext(ctx context.Context, network string, addr netip.AddrPort) (net.Conn, error)
}

// Options configure a [Proxy]. Targets, Resolver and Dialer are required;
// the rest have defaults.
type Options struct {
	// Targets are the only (host, port) pairs a client may reach.
	Targets []target.Target
	// Resolver resolves target names through the tailnet.
	Resolver Resolver
	// Dialer connects to resolved addresses through the tailnet.
	Dialer Dialer
	// Logger receives refusals (Info) and per-request diagnostics (Debug).
	// Nil discards.
	Logger *slog.Logger
	// OnEvent, if set, is called synchronously with each recorded Event, so a
	// run can stream diagnostics. It must not block.
	OnEvent func(Event)
	// MaxHeaderBytes bounds an HTTP request's header block; larger requests
	// get 431. Zero means 64 KiB.
	MaxHeaderBytes int
	// IdleTimeout bounds how long a client connection may sit silent: before
	// its first request, between keep-alive requests, in a SOCKS5 handshake,
	// and inside a tunnel with no bytes moving either way. Zero means 2
	// minutes for waiting connections and no limit for tunnels.
	IdleTimeout time.Duration
	// DialTimeout bounds resolving plus dialling one target. Zero means 30 s.
	DialTimeout time.Duration
}

// Proxy is a per-run loopback proxy. Create it with [New], serve it with
// [Proxy.Start] (or Serve / ListenAndServe), and end it with [Proxy.Close].
type Proxy struct {
	rules       targetRules
	resolver    Resolver
	dialer      Dialer
	log         *slog.Logger
	onEvent     func(Event)
	idleTimeout time.Duration // 0 for tunnels means none
	waitTimeout time.Duration
	dialTimeout time.Duration

	ctx    context.Context // cancelled by Close; every dial derives from it
	cancel context.CancelFunc

	httpSrv   *http.Server
	httpConns *pipe.Listener // sniffed HTTP connections handed to httpSrv
	transport *http.Transport
	forward   *httputil.ReverseProxy

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{} // SOCKS5 and hijacked CONNECT connections
	events    []Event
	closed    bool
	addr      netip.AddrPort
	wg        sync.WaitGroup
	serveOnce sync.Once
}

// New checks the options and returns a Proxy that is not yet listening.
func New(opts Options) (*Proxy, error) {
	if opts.Resolver == nil {
		return nil, errors.New("egress: a tailnet Resolver is required")
	}
	if opts.Dialer == nil {
		return nil, errors.New("egress: a tailnet Dialer is required")
	}
	rules, err := compileTargets(opts.Targets)
	if err != nil {
		return nil, fmt.Errorf("egress: %w", err)
	}
	p := &Proxy{
		rules:       rules,
		resolver:    opts.Resolver,
		dialer:      opts.Dialer,
		log:         opts.Logger,
		onEvent:     opts.OnEvent,
		idleTimeout: opts.IdleTimeout,
		waitTimeout: opts.IdleTimeout,
		dialTimeout: opts.DialTimeout,
		listeners:   map[net.Listener]struct{}{},
		conns:       map[net.Conn]struct{}{},
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.waitTimeout <= 0 {
		p.waitTimeout = 2 * time.Minute
	}
	if p.dialTimeout <= 0 {
		p.dialTimeout = 30 * time.Second
	}
	maxHeader := opts.MaxHeaderBytes
	if maxHeader <= 0 {
		maxHeader = 64 << 10
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.httpConns = pipe.NewListener(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	p.transport = &http.Transport{
		// Proxy stays nil: the environment's HTTP_PROXY must never apply.
		Proxy:                  nil,
		DialContext:            p.dialForTransport,
		ForceAttemptHTTP2:      false,
		DisableCompression:     true, // pass bodies through byte for byte
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    15 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 1 << 20,
	}
	p.forward = p.newForwarder()
	p.httpSrv = &http.Server{
		Handler:                      http.HandlerFunc(p.serveHTTP),
		MaxHeaderBytes:               maxHeader,
		ReadHeaderTimeout:            p.waitTimeout,
		IdleTimeout:                  p.waitTimeout,
		BaseContext:                  func(net.Listener) context.Context { return p.ctx },
		DisableGeneralOptionsHandler: true,
		ErrorLog:                     slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return p, nil
}

// Start listens on 127.0.0.1 (a fresh port) and serves in the background
// until Close. It returns the address to give clients.
func (p *Proxy) Start() (netip.AddrPort, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("egress: listen on loopback: %w", err)
	}
	if err := p.track(l); err != nil {
		l.Close()
		return netip.AddrPort{}, err
	}
	go func() {
		if err := p.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) {
			p.log.Error("egress proxy stopped", "err", err)
		}
	}()
	return p.Addr(), nil
}

// ListenAndServe listens on 127.0.0.1 (a fresh port) and serves until
// Close; Addr reports the port once it is listening.
func (p *Proxy) ListenAndServe() error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("egress: listen on loopback: %w", err)
	}
	return p.Serve(l)
}

// Addr is the loopback address the proxy listens on (the zero value before
// it listens).
func (p *Proxy) Addr() netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addr
}

func (p *Proxy) track(l net.Listener) error {
	ap, err := netip.ParseAddrPort(l.Addr().String())
	if err != nil || !ap.Addr().IsLoopback() {
		return fmt.Errorf("egress: refusing to serve on %s: the proxy listens on loopback only", l.Addr())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	p.listeners[l] = struct{}{}
	if !p.addr.IsValid() {
		p.addr = ap
	}
	return nil
}

// Serve accepts client connections on l, which must be a loopback
// listener, until Close. Every connection may speak HTTP (CONNECT or
// absolute-URI forwarding) or SOCKS5.
func (p *Proxy) Serve(l net.Listener) error {
	p.mu.Lock()
	_, tracked := p.listeners[l]
	p.mu.Unlock()
	if !tracked {
		if err := p.track(l); err != nil {
			l.Close()
			return err
		}
	}
	p.serveOnce.Do(func() {
		if !p.begin() {
			return
		}
		go func() {
			defer p.wg.Done()
			_ = p.httpSrv.Serve(p.httpConns)
		}()
	})
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if p.ctx.Err() != nil {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("egress: accept: %w", err)
		}
		delay = 0
		if !p.begin() {
			c.Close()
			return net.ErrClosed
		}
		go func() {
			defer p.wg.Done()
			p.sniff(c)
		}()
	}
}

// sniff reads the first byte to pick the protocol: 0x05 is SOCKS5, anything
// else is HTTP.
func (p *Proxy) sniff(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(p.waitTimeout))
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil {
		c.Close()
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	if first[0] == socksVersion {
		if !p.trackConn(c) {
			c.Close()
			return
		}
		defer p.untrackConn(c)
		p.serveSOCKS(c)
		return
	}
	if !p.httpConns.Put(&sniffedConn{Conn: c, first: first[0], hasFirst: true}) {
		c.Close()
	}
}

// begin counts one more goroutine that Close must wait for; it reports
// false once the proxy is closed. Counting under the lock that Close takes
// keeps Add from racing with Wait.
func (p *Proxy) begin() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.wg.Add(1)
	return true
}

// trackConn registers a connection that http.Server does not manage, so
// Close can tear it down. It reports false once the proxy is closed.
func (p *Proxy) trackConn(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrackConn(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// Close stops listening, ends every in-flight request and tunnel, and waits
// briefly for their events to be recorded. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	for l := range p.listeners {
		l.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.httpConns.Close()
	_ = p.httpSrv.Close()
	p.transport.CloseIdleConnections()

	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		p.log.Warn("egress proxy: some connections did not end within 5s of Close")
	}
	return nil
}

// open applies the three rules to one request and returns a tailnet
// connection to the target, or a Refusal saying why not.
func (p *Proxy) open(ctx context.Context, host string, port uint16) (net.Conn, netip.Addr, *Refusal) {
	name, ip, ref := p.rules.check(host, port)
	if ref != nil {
		return nil, netip.Addr{}, ref
	}
	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	stop := context.AfterFunc(p.ctx, cancel)
	defer stop()

	addrs := []netip.Addr{ip}
	if !ip.IsValid() {
		var err error
		addrs, err = p.resolver.LookupNetIP(ctx, name)
		if ref := p.resolveRefusal(name, addrs, err); ref != nil {
			return nil, netip.Addr{}, ref
		}
	}
	var first *Refusal
	for _, a := range addrs {
		a = a.Unmap()
		ap := netip.AddrPortFrom(a, port)
		c, err := p.dialer.DialContext(ctx, "tcp", ap)
		if err == nil {
			return c, a, nil
		}
		if first == nil {
			first = p.dialRefusal(name, ap, err)
		}
		if p.ctx.Err() != nil {
			break
		}
	}
	return nil, addrs[0].Unmap(), first
}

func (p *Proxy) resolveRefusal(name string, addrs []netip.Addr, err error) *Refusal {
	var dnsErr *net.DNSError
	switch {
	case p.ctx.Err() != nil:
		return refuse(ReasonProxyClosed, "tailgate: the run ended")
	case err == nil && len(addrs) > 0:
		return nil
	case err == nil, errors.Is(err, ErrNameNotInTailnet), errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return refuse(ReasonNameNotInTailnet, fmt.Sprintf("tailgate: %s does not resolve in the tailnet (MagicDNS or split DNS)", name))
	default:
		return refuse(ReasonResolveFailed, fmt.Sprintf("tailgate: resolving %s through the tailnet failed: %v", name, err))
	}
}

func (p *Proxy) dialRefusal(name string, ap netip.AddrPort, err error) *Refusal {
	switch {
	case p.ctx.Err() != nil:
		return refuse(ReasonProxyClosed, "tailgate: the run ended")
	case errors.Is(err, ErrNotViaTailnet):
		return refuse(ReasonNotViaTailnet, fmt.Sprintf(
			"tailgate: %s (%s) is not routed through the tailnet; the host network is never used", name, ap))
	default:
		return refuse(ReasonDialFailed, fmt.Sprintf("tailgate: connecting to %s (%s) through the tailnet failed: %v", name, ap, err))
	}
}

// dialForTransport is the forwarding transport's only way out: the same
// rule-checked open as CONNECT and SOCKS5.
func (p *Proxy) dialForTransport(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, refuse(ReasonBadRequest, fmt.Sprintf("tailgate: bad address %q", addr))
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, refuse(ReasonBadRequest, fmt.Sprintf("tailgate: bad port in %q", addr))
	}
	c, resolved, ref := p.open(ctx, host, uint16(port))
	if ref != nil {
		return nil, ref
	}
	return &resolvedConn{Conn: c, resolved: resolved}, nil
}

// resolvedConn remembers which tailnet address a pooled forwarding
// connection went to, for the per-request Event.
type resolvedConn struct {
	net.Conn
	resolved netip.Addr
}

// sniffedConn gives back the byte read to pick the protocol.
type sniffedConn struct {
	net.Conn
	first    byte
	hasFirst bool
}

func (c *sniffedConn) Read(b []byte) (int, error) {
	if c.hasFirst && len(b) > 0 {
		b[0] = c.first
		c.hasFirst = false
		return 1, nil
	}
	return c.Conn.Read(b)
}
