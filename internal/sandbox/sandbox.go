// Package sandbox runs a whole tailnet inside one process, on loopback
// (or one address of the host), with no internet: the demo, tailgate
// sandbox, tailgate serve --sandbox and the tests use it as a customer's
// tailnet.
//
// # Overview
//
// A sandbox is Tailscale's own in-process coordination server
// (tstest/integration/testcontrol), a DERP relay and a STUN responder on
// 127.0.0.1 (or [Options.Addr], so that nodes of other hosts and network
// namespaces can join), and a few tsnet nodes playing the customer's
// devices:
//
//   - a subnet router ("office-router", always the first node, 100.64.0.1)
//     advertising [ApprovedSubnet] (approved) and [UnapprovedSubnet]
//     (advertised, not approved). The private apps behind it are served
//     in-process by its fallback TCP handler at documentation addresses;
//     nothing touches the host network.
//   - an internal DNS server (a real miekg/dns server) on the router's
//     tailnet address, configured as the tailnet's split-DNS resolver for
//     [InternalZone], so internal names resolve through the tailnet exactly
//     as they do for a customer; devices also get MagicDNS names under
//     [MagicDNSSuffix].
//   - a device ("staging-box") serving the demo app on its tailnet address.
//
// The sandbox also serves the Tailscale API v2 stand-in (package
// tsapi/fake) over the same state: devices listed there are the real nodes
// here, approving routes there changes routing here, deleting a device
// there logs the node out.
//
// # The tailnet policy is enforced
//
// Peers and packet filters follow the policy file stored in the API
// stand-in, the one tailgate edits through the official client, the way
// Tailscale and headscale compute them: a node's packet filter lets in
// exactly what the policy's grants and acls allow into it (its own
// addresses, and the approved routes it serves as a subnet router), and a
// node sees as peers only the nodes it may reach or that may reach it.
// Runner nodes of one environment, which only reach targets, are not each
// other's peers. A policy write (or a node, route or device change)
// re-sends the maps it changes, so it applies to running nodes at once.
// Grants' "app" capabilities reach the
// destination's filter (and WhoIs). A new sandbox has Tailscale's default
// policy, which allows all; write a narrower one to test least privilege.
// [Options.AllowAll] restores testcontrol's own behaviour (every node
// peers with every other, allow-all filter) whatever the policy says.
//
// Enforcement fails closed: a stored policy that Tailscale would refuse
// (a syntax error, a tag missing from tagOwners, a failing test) grants
// nothing, and so does a selector the sandbox cannot tie to devices.
// Devices without tags belong to one user, sandbox@example.com.
//
// # What the sandbox does not do
//
// It does not check auth keys (any key joins, with any tags it asks for:
// tag ownership is not checked), and it does not model grants with "via",
// autogroup:internet and exit nodes, role autogroups (autogroup:admin
// selects nobody), ipsets, posture checks or Tailscale SSH policy: those
// select or grant nothing. After changing testcontrol's state directly
// (through [Sandbox.Control]) nodes learn of it only with their next map;
// change the policy through the API instead.
//
// # Usage
//
//	sb, err := sandbox.Start(ctx, sandbox.Options{})
//	if err != nil { ... }
//	defer sb.Close()
//	node, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: "client", AcceptRoutes: true})
//	addrs, err := node.LookupNetIP(ctx, sandbox.DemoAppName) // through the tailnet
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"sync"
	"time"

	"tailscale.com/envknob"
	"tailscale.com/net/netns"
	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/dnstype"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"

	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// Addresses and names of the sandbox's customer network.
var (
	// ApprovedSubnet is advertised by the router and approved.
	ApprovedSubnet = netip.MustParsePrefix("192.0.2.0/24")
	// UnapprovedSubnet is advertised by the router but not approved, the
	// way a customer's forgotten route looks.
	UnapprovedSubnet = netip.MustParsePrefix("198.51.100.0/24")
	// RouterIP is the router's tailnet address; it also serves internal DNS.
	RouterIP = netip.MustParseAddr("100.64.0.1")

	// DemoAppIP serves the demo app on :80 (HTTP) and :443 (HTTPS, a
	// self-signed certificate for DemoAppName).
	DemoAppIP = netip.MustParseAddr("192.0.2.10")
	// MismatchAppIP serves HTTPS with a certificate for another name.
	MismatchAppIP = netip.MustParseAddr("192.0.2.11")
	// LegacyAppIP is behind the unapproved route.
	LegacyAppIP = netip.MustParseAddr("198.51.100.10")
)

const (
	// MagicDNSSuffix is the sandbox tailnet's MagicDNS domain.
	MagicDNSSuffix = "sandbox.ts.net"
	// InternalZone is the split-DNS zone served through the tailnet.
	InternalZone = "internal.example"
	// DemoAppName resolves (through the tailnet only) to DemoAppIP.
	DemoAppName = "app.internal.example"
	// MismatchAppName resolves to MismatchAppIP.
	MismatchAppName = "mismatch.internal.example"
	// LegacyAppName resolves to LegacyAppIP (unapproved route).
	LegacyAppName = "legacy.internal.example"
	// DeviceName is the device that serves the demo app on :80 itself.
	DeviceName = "staging-box"
	// RouterName is the subnet router's hostname.
	RouterName = "office-router"
	// DemoAppText appears on every demo app page.
	DemoAppText = "Hello from the private app"
)

// Options configure a sandbox. The zero value is a complete sandbox.
type Options struct {
	// Logf receives the control server's and nodes' verbose logs;
	// discarded when nil.
	Logf logger.Logf
	// Addr is the IPv4 address the control server, the DERP relay, the
	// STUN responder and the API stand-in listen on, each on a free port;
	// the DERP map and every URL name it. The zero value is 127.0.0.1.
	// Set it to an address of this host that other hosts or network
	// namespaces reach for their nodes to join from there. It cannot be
	// 0.0.0.0: nodes must be told one address to reach.
	Addr netip.Addr
	// AllowAll makes every node every other node's peer with an allow-all
	// packet filter, whatever the tailnet policy says: testcontrol's own
	// behaviour. The zero value enforces the policy stored in the API
	// stand-in (see the package doc).
	AllowAll bool
}

// Sandbox is a running in-process tailnet.
type Sandbox struct {
	logf    logger.Logf
	addr    netip.Addr
	relay   *Relay
	control *testcontrol.Server
	ctrlSrv *httptest.Server
	site    *Site
	router  *tailnet.Node
	device  *tailnet.Node
	// deviceApp is the demo app the device serves on its tailnet address.
	deviceApp *http.Server
	api       *apiServer
	netmaps   *netmaps // nil with Options.AllowAll
	stop      chan struct{}
	bg        sync.WaitGroup

	mu        sync.Mutex
	nodes     map[key.NodePublic]*tailnet.Node // nodes this sandbox started
	permanent map[key.NodePublic]bool          // customer devices, not ephemeral
	enabled   map[key.NodePublic][]netip.Prefix
	seenLive  map[key.NodePublic]bool
	firstSeen map[key.NodePublic]time.Time
	goneSince map[key.NodePublic]time.Time
	removed   map[key.NodePublic]bool // deleted or logged out
	closed    bool
}

// Start starts a sandbox tailnet with its router, internal DNS, demo apps
// and API. Close it to stop every node and server it started.
func Start(ctx context.Context, opts Options) (_ *Sandbox, err error) {
	logf := opts.Logf
	if logf == nil {
		logf = logger.Discard
	}
	addr := opts.Addr
	if !addr.IsValid() {
		addr = netip.AddrFrom4([4]byte{127, 0, 0, 1})
	}
	if !addr.Is4() || addr.IsUnspecified() {
		return nil, fmt.Errorf("sandbox: listen address %v: want an IPv4 address of this host, not 0.0.0.0 or IPv6", addr)
	}
	ConfineNodes()

	s := &Sandbox{
		logf:      logf,
		addr:      addr,
		stop:      make(chan struct{}),
		nodes:     map[key.NodePublic]*tailnet.Node{},
		permanent: map[key.NodePublic]bool{},
		enabled:   map[key.NodePublic][]netip.Prefix{},
		seenLive:  map[key.NodePublic]bool{},
		firstSeen: map[key.NodePublic]time.Time{},
		goneSince: map[key.NodePublic]time.Time{},
		removed:   map[key.NodePublic]bool{},
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.relay, err = StartRelayOn(addr, logf); err != nil {
		return nil, fmt.Errorf("sandbox: DERP/STUN: %w", err)
	}
	s.control = &testcontrol.Server{
		DERPMap: s.relay.DERPMap(),
		DNSConfig: &tailcfg.DNSConfig{
			Proxied: true,
			// Split DNS: the internal zone is answered by the DNS server on
			// the router's tailnet address, reachable only through the
			// tailnet.
			Routes: map[string][]*dnstype.Resolver{
				InternalZone + ".": {{Addr: RouterIP.String()}},
			},
		},
		MagicDNSDomain: MagicDNSSuffix,
		// A non-nil TagOwners makes testcontrol give nodes the tags they
		// request at registration (ownership is not checked).
		TagOwners: map[string][]string{},
		AllOnline: true,
		Logf:      logf,
	}
	s.control.HoldMapRequest = s.keepTags
	s.newAPI()
	if !opts.AllowAll {
		s.netmaps = newNetmaps(s)
		s.control.AltMapStream = s.netmaps.serveMap
	}
	if s.ctrlSrv, err = s.listenHTTP(s.control); err != nil {
		return nil, fmt.Errorf("sandbox: control: %w", err)
	}
	s.control.HTTPTestServer = s.ctrlSrv
	s.ctrlSrv.Start()
	s.bg.Go(s.watchLiveness)

	if err := s.startRouter(ctx); err != nil {
		return nil, err
	}
	if err := s.startDevice(ctx); err != nil {
		return nil, err
	}
	if err := s.startAPI(); err != nil {
		return nil, err
	}
	return s, nil
}

// listenHTTP returns an unstarted HTTP server for h on the sandbox's
// address, on a free port.
// ConfineNodes sets, for this whole process, what Start sets for the
// sandbox's own nodes: nodes talk only to the sandbox's address. Start
// calls it; a process whose nodes join a sandbox running in another
// process on this host (a benchmark that measures its nodes apart from
// the control's) calls it before its first node joins, so that its nodes
// behave as they would beside an in-process sandbox.
func ConfineNodes() {
	// Nodes here only talk to the sandbox's address; binding sockets to
	// the default route's interface (netns) would only get in the way.
	netns.SetEnabled(false)
	// Keep node-to-node WireGuard traffic on the sandbox's address:
	// without this, nodes also offer the host's LAN addresses as
	// endpoints, and a test machine's LAN may even sit inside the
	// sandbox's documentation subnets. STUN on that address still gives
	// every node an endpoint there (and nodes of other processes, which
	// keep their local addresses unless they call ConfineNodes too, one
	// on the path they reach it by).
	envknob.Setenv("TS_DEBUG_OMIT_LOCAL_ADDRS", "true")
}

func (s *Sandbox) listenHTTP(h http.Handler) (*httptest.Server, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(s.addr, 0).String())
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = logger.StdLogger(s.logf)
	return srv, nil
}

// Addr is the address the sandbox's servers listen on (Options.Addr).
func (s *Sandbox) Addr() netip.Addr { return s.addr }

// ControlURL is the coordination server's URL, for tsnet's ControlURL.
func (s *Sandbox) ControlURL() string { return s.ctrlSrv.URL }

// Control is the underlying testcontrol server, for tests that need to
// reach into it.
func (s *Sandbox) Control() *testcontrol.Server { return s.control }

// Router is the subnet-router node.
func (s *Sandbox) Router() *tailnet.Node { return s.router }

// Device is the "staging-box" device node.
func (s *Sandbox) Device() *tailnet.Node { return s.device }

// NodeOptions describe a node started by the sandbox.
type NodeOptions struct {
	Hostname     string
	Tags         []string
	AcceptRoutes bool
	// AuthKey is passed through; the sandbox accepts any key.
	AuthKey string
}

// NewNode joins an ephemeral node (in-memory state) to the sandbox and
// returns once it can dial without its first packets being dropped. The
// sandbox closes it on Close if the caller has not.
func (s *Sandbox) NewNode(ctx context.Context, o NodeOptions) (*tailnet.Node, error) {
	return s.join(ctx, "node "+o.Hostname, tailnet.JoinOptions{
		AuthKey:      o.AuthKey,
		Hostname:     o.Hostname,
		Tags:         o.Tags,
		AcceptRoutes: o.AcceptRoutes,
	}, false)
}

// join joins a node to the sandbox's control, logging to its logs, and
// tracks it (permanent: the router and the device, which stay until
// Close); a node that cannot be tracked is closed. Join errors are
// "sandbox: <what>: ...".
func (s *Sandbox) join(ctx context.Context, what string, opts tailnet.JoinOptions, permanent bool) (*tailnet.Node, error) {
	opts.ControlURL, opts.Logf = s.ControlURL(), s.logf
	n, err := tailnet.Join(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("sandbox: %s: %w", what, err)
	}
	if err := s.track(ctx, n, permanent); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (s *Sandbox) track(ctx context.Context, n *tailnet.Node, permanent bool) error {
	st, err := n.LocalClient().StatusWithoutPeers(ctx)
	if err != nil {
		return fmt.Errorf("sandbox: node status: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("sandbox: closed")
	}
	s.nodes[st.Self.PublicKey] = n
	// Join waited for the node's DERP connection; when it goes away the
	// node has left, however soon that is.
	s.seenLive[st.Self.PublicKey] = true
	if permanent {
		s.permanent[st.Self.PublicKey] = true
	}
	return nil
}

func (s *Sandbox) startRouter(ctx context.Context) error {
	n, err := s.join(ctx, "router", tailnet.JoinOptions{
		Hostname:        RouterName,
		AdvertiseRoutes: []netip.Prefix{ApprovedSubnet, UnapprovedSubnet},
		Persistent:      true,
	}, true)
	if err != nil {
		return err
	}
	s.router = n
	// The split-DNS route names the router's address before it joins; the
	// control server numbers nodes in join order, so the first node must
	// have it.
	if n.IPv4() != RouterIP {
		return fmt.Errorf("sandbox: router joined as %v, want %v (was another node joined first?)", n.IPv4(), RouterIP)
	}
	if err := s.setEnabledRoutes(s.routerKey(), []netip.Prefix{ApprovedSubnet}); err != nil {
		return err
	}
	if s.site, err = ServeSite(n, InternalZone, []netip.Prefix{ApprovedSubnet, UnapprovedSubnet}, s.logf); err != nil {
		return fmt.Errorf("sandbox: %w", err)
	}
	if err := s.addDemoApps(); err != nil {
		return err
	}
	return nil
}

func (s *Sandbox) routerKey() key.NodePublic {
	for k, n := range s.nodes {
		if n == s.router {
			return k
		}
	}
	return key.NodePublic{}
}

func (s *Sandbox) startDevice(ctx context.Context) error {
	n, err := s.join(ctx, "device", tailnet.JoinOptions{Hostname: DeviceName, Persistent: true}, true)
	if err != nil {
		return err
	}
	s.device = n
	ln, err := n.Server().Listen("tcp", ":80")
	if err != nil {
		return fmt.Errorf("sandbox: device listen: %w", err)
	}
	srv := &http.Server{Handler: DemoApp(DeviceName + "." + MagicDNSSuffix), ReadHeaderTimeout: 10 * time.Second}
	s.deviceApp = srv
	go srv.Serve(ln)
	return nil
}

// setEnabledRoutes approves routes of a node: the control server then
// offers them to peers that accept routes.
func (s *Sandbox) setEnabledRoutes(k key.NodePublic, routes []netip.Prefix) error {
	s.control.SetSubnetRoutes(k, routes)
	s.mu.Lock()
	s.enabled[k] = slices.Clone(routes)
	s.mu.Unlock()
	if s.netmaps != nil {
		// Peers learn the routes from the router's record, the router
		// its filter from the policy view: both change.
		s.netmaps.updateNode(k, func(*tailcfg.Node) {})
	}
	return nil
}

// nodesChanged re-sends every node its map after a change of the nodes,
// their routes or the policy. testcontrol's own stream (AllowAll) learns
// of node and route changes by itself and ignores the policy.
func (s *Sandbox) nodesChanged() {
	if s.netmaps != nil {
		s.netmaps.nodesChanged()
	}
}

// expireKey expires a node's key, which makes its tsnet server drop out of
// the tailnet.
func (s *Sandbox) expireKey(k key.NodePublic) {
	expire := func(n *tailcfg.Node) { n.KeyExpiry = time.Now().Add(-time.Minute) }
	if s.netmaps != nil {
		s.netmaps.updateNode(k, expire)
		return
	}
	if n := s.control.Node(k); n != nil {
		expire(n)
		s.control.UpdateNode(n)
	}
}

// keepTags stops testcontrol from treating a map request whose Hostinfo
// carries no RequestTags (tsnet sends some while it starts) as a request to
// drop the node's tags, which it answers by expiring the node key: the node
// then re-registers under a new key and its old record lingers. A real
// control server changes tags only on re-authentication.
func (s *Sandbox) keepTags(req *tailcfg.MapRequest) func() {
	if req.Hostinfo == nil || len(req.Hostinfo.RequestTags) > 0 {
		return nil
	}
	if n := s.control.Node(req.NodeKey); n != nil && len(n.Tags) > 0 {
		req.Hostinfo.RequestTags = slices.Clone(n.Tags)
	}
	return nil
}

// liveness: Tailscale removes an ephemeral node when it logs out or stays
// offline; testcontrol never does. The sandbox models it: a non-permanent
// node that was connected to DERP and has been gone for removeGrace is
// removed.
const (
	removeGrace = time.Second
	// joinGrace is how long a registered node may take to reach DERP.
	joinGrace = 3 * time.Second
)

func (s *Sandbox) watchLiveness() {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.checkLiveness()
	}
}

func (s *Sandbox) checkLiveness() {
	now := time.Now()
	removed := false
	defer func() {
		if removed {
			s.nodesChanged()
		}
	}()
	for _, n := range s.control.AllNodes() {
		k := n.Key
		// DERP's view alone misses live nodes at times (testcontrol's
		// duplicate-client handling); under enforcement a removed node
		// loses its peers, so a node holding a map long-poll counts too.
		live := s.relay.Connected(k) || s.netmaps != nil && s.netmaps.isPolling(k)
		s.mu.Lock()
		if _, ok := s.firstSeen[k]; !ok {
			s.firstSeen[k] = now
		}
		switch {
		case s.removed[k] || s.permanent[k]:
		case live:
			s.seenLive[k] = true
			delete(s.goneSince, k)
		case s.seenLive[k] || now.Sub(s.firstSeen[k]) > joinGrace:
			// A node that joined through tailnet.Join was on DERP before
			// Join returned, even if it came and went between two checks.
			s.seenLive[k] = true
			if t, ok := s.goneSince[k]; !ok {
				s.goneSince[k] = now
			} else if now.Sub(t) > removeGrace {
				s.removed[k] = true
				delete(s.nodes, k)
				removed = true
			}
		}
		s.mu.Unlock()
	}
}

// Close stops every node and server of the sandbox.
func (s *Sandbox) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	nodes := make([]*tailnet.Node, 0, len(s.nodes))
	for _, n := range s.nodes {
		nodes = append(nodes, n)
	}
	s.mu.Unlock()
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	if s.api != nil {
		s.api.close()
	}
	if s.site != nil {
		s.site.Close()
	}
	if s.deviceApp != nil {
		s.deviceApp.Close()
	}
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); n.Close() }()
	}
	if s.router != nil && !slices.Contains(nodes, s.router) {
		s.router.Close()
	}
	if s.device != nil && !slices.Contains(nodes, s.device) {
		s.device.Close()
	}
	wg.Wait()
	if s.ctrlSrv != nil {
		s.ctrlSrv.Close()
	}
	if s.relay != nil {
		s.relay.Close()
	}
	s.bg.Wait()
	return nil
}
