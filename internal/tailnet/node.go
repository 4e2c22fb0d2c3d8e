// Package tailnet joins automation to a tailnet as short-lived nodes and
// is the single place in tailgate that dials or resolves through one.
//
// # Overview
//
// Every verification and every run joins the customer's tailnet as its own
// ephemeral node: in-memory state (nothing on disk outlives the process),
// tagged with the environment's tag, subnet routes accepted, and logged out
// when it is closed. Unlike tsnet's own Dial, the [Node] here never falls
// back to the host network or the host resolver:
//
//   - [Node.LookupNetIP] answers only from the tailnet's DNS (MagicDNS
//     names, extra records, and split-DNS resolvers that are themselves
//     tailnet addresses). A name that the tailnet does not know is an
//     [ErrNameNotInTailnet], not a query to /etc/resolv.conf.
//   - [Node.DialTCP] dials only addresses the node routes through
//     WireGuard (peer addresses and accepted subnet routes), and always
//     through the node's userspace network stack, so a route that vanishes
//     between the check and the dial still cannot leak to the host.
//
// # Usage
//
//	node, err := tailnet.Join(ctx, tailnet.JoinOptions{
//		ControlURL:   controlURL,
//		AuthKey:      key, // single-use, ephemeral, pre-authorized
//		Hostname:     "tailgate-verify-staging",
//		Tags:         []string{"tag:tailgate-staging"},
//		AcceptRoutes: true,
//	})
//	if err != nil { ... }
//	defer node.Close()
//	addrs, err := node.LookupNetIP(ctx, "app.internal.example")
//	conn, err := node.DialTCP(ctx, netip.AddrPortFrom(addrs[0], 443))
package tailnet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"tailscale.com/client/local"
	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnstate"
	"tailscale.com/ipn/store/mem"
	"tailscale.com/tailcfg"
	"tailscale.com/tsnet"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// JoinOptions describe the node to join with.
type JoinOptions struct {
	// ControlURL is the coordination server: Tailscale's when empty, or a
	// sandbox or headscale URL.
	ControlURL string
	// AuthKey registers the node. Tailgate only ever uses single-use,
	// pre-authorized, ephemeral keys here.
	AuthKey string
	// Hostname is the node's name in the tailnet.
	Hostname string
	// Tags are advertised at registration; the auth key must own them.
	Tags []string
	// AcceptRoutes makes the node use subnet routes other nodes advertise.
	// Linux tsnet nodes do not accept routes by default.
	AcceptRoutes bool
	// AdvertiseRoutes makes the node a subnet router for these prefixes.
	AdvertiseRoutes []netip.Prefix
	// Persistent keeps the node in the tailnet after Close (state in Dir).
	// Tailgate's own nodes are always ephemeral; the sandbox's demo devices
	// are not.
	Persistent bool
	// Dir holds tsnet's working files; a temporary directory when empty,
	// removed again on Close.
	Dir string
	// Logf receives tsnet's verbose logs; discarded when nil.
	Logf logger.Logf
}

// Node is one joined tailnet node.
type Node struct {
	hostname string
	srv      *tsnet.Server
	lc       *local.Client
	tmpDir   string
	ip4      netip.Addr
	ip6      netip.Addr
	joined   time.Duration
	// peerPaths are the peers WarmPath has warmed or is warming, one
	// entry a peer (see peerPath).
	peerPathsMu sync.Mutex
	peerPaths   map[netip.Addr]*peerPath
	// magicDNSSuffix is the tailnet's MagicDNS domain, without dots at
	// either end ("tail1234.ts.net").
	magicDNSSuffix string
}

// Join starts a node and returns once it is running and connected to its
// home DERP region, so the first dial from it is not dropped.
func Join(ctx context.Context, opts JoinOptions) (*Node, error) {
	if opts.Hostname == "" {
		return nil, errors.New("tailnet: join: hostname is required")
	}
	start := time.Now()
	n := &Node{hostname: opts.Hostname}
	dir := opts.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "tailgate-node-")
		if err != nil {
			return nil, fmt.Errorf("tailnet: join %s: %w", opts.Hostname, err)
		}
		dir, n.tmpDir = d, d
	}
	logf := opts.Logf
	if logf == nil {
		logf = logger.Discard
	}
	srv := &tsnet.Server{
		Dir:           dir,
		Hostname:      opts.Hostname,
		ControlURL:    opts.ControlURL,
		AuthKey:       opts.AuthKey,
		AdvertiseTags: opts.Tags,
		Ephemeral:     !opts.Persistent,
		Logf:          logf,
		UserLogf:      logf,
	}
	if !opts.Persistent {
		// Ephemeral nodes keep their keys only in memory: nothing a crash
		// leaves on disk can rejoin the tailnet.
		srv.Store = new(mem.Store)
	}
	n.srv = srv
	fail := func(step string, err error) (*Node, error) {
		n.Close()
		return nil, fmt.Errorf("tailnet: join %s: %s: %w", opts.Hostname, step, err)
	}
	st, err := srv.Up(ctx)
	if err != nil {
		return fail("up", err)
	}
	lc, err := srv.LocalClient()
	if err != nil {
		return fail("local client", err)
	}
	n.lc = lc
	if st.CurrentTailnet != nil {
		n.magicDNSSuffix = strings.Trim(st.CurrentTailnet.MagicDNSSuffix, ".")
	}
	for _, ip := range st.TailscaleIPs {
		if ip.Is4() && !n.ip4.IsValid() {
			n.ip4 = ip
		} else if ip.Is6() && !n.ip6.IsValid() {
			n.ip6 = ip
		}
	}
	if opts.AcceptRoutes || len(opts.AdvertiseRoutes) > 0 {
		mp := &ipn.MaskedPrefs{}
		if opts.AcceptRoutes {
			mp.RouteAll, mp.RouteAllSet = true, true
		}
		if len(opts.AdvertiseRoutes) > 0 {
			mp.AdvertiseRoutes, mp.AdvertiseRoutesSet = opts.AdvertiseRoutes, true
		}
		if _, err := lc.EditPrefs(ctx, mp); err != nil {
			return fail("edit prefs", err)
		}
	}
	if err := waitHomeDERP(ctx, srv); err != nil {
		return fail("home DERP", err)
	}
	n.joined = time.Since(start)
	return n, nil
}

// waitHomeDERP blocks until the node has chosen a home DERP region and
// heard from it. Until then the DERP server drops peers' disco frames for
// the node, and the first connection to or from it stalls.
func waitHomeDERP(ctx context.Context, srv *tsnet.Server) error {
	h := srv.Sys().HealthTracker.Get()
	ms := srv.Sys().MagicSock.Get()
	for {
		if r := ms.GetLastNetcheckReport(ctx); r != nil && r.PreferredDERP != 0 &&
			!h.GetDERPRegionReceivedTime(r.PreferredDERP).IsZero() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Server is the underlying tsnet server, for listening on the tailnet.
func (n *Node) Server() *tsnet.Server { return n.srv }

// LocalClient talks to the node's own LocalAPI (status, WhoIs, pings).
func (n *Node) LocalClient() *local.Client { return n.lc }

// IPv4 is the node's Tailscale IPv4 address.
func (n *Node) IPv4() netip.Addr { return n.ip4 }

// IPv6 is the node's Tailscale IPv6 address.
func (n *Node) IPv6() netip.Addr { return n.ip6 }

// JoinDuration is how long Join took, up to home DERP connected.
func (n *Node) JoinDuration() time.Duration { return n.joined }

// Hostname is the node's name in the tailnet.
func (n *Node) Hostname() string { return n.hostname }

// Close leaves the tailnet. For an ephemeral node tsnet logs out, which
// removes the node from the tailnet at once; callers that must be sure
// (a crash skips this) also delete the device through the control API.
func (n *Node) Close() error {
	var err error
	if n.srv != nil {
		err = n.srv.Close()
	}
	if n.tmpDir != "" {
		os.RemoveAll(n.tmpDir)
	}
	return err
}

// dialTimeoutDefault bounds a single dial when the caller's context has no
// deadline: blocked tailnet connections are dropped silently, not reset.
const dialTimeoutDefault = 10 * time.Second

// DialTCP connects to dst through the tailnet only. It refuses, with an
// [*NotRoutedError], any address the node would not send through WireGuard.
func (n *Node) DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error) {
	if err := n.CheckRoute(ctx, dst); err != nil {
		return nil, err
	}
	d := n.srv.Sys().Dialer.Get()
	if d.NetstackDialTCP == nil {
		return nil, errors.New("tailnet: node has no userspace network stack")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, dialTimeoutDefault)
		defer cancel()
	}
	// Dial through netstack directly rather than tsnet's Dial: the latter
	// falls back to the host network for non-tailnet addresses.
	c, err := d.NetstackDialTCP(ctx, dst)
	if err != nil {
		return nil, fmt.Errorf("tailnet: dial %s: %w", dst, err)
	}
	return c, nil
}

// NotRoutedError says an address is not reachable through the tailnet from
// this node: it is neither a peer's address nor inside an accepted route.
type NotRoutedError struct{ Addr netip.Addr }

func (e *NotRoutedError) Error() string {
	return fmt.Sprintf("%s is not routed through the tailnet (no peer has it and no approved subnet route covers it)", e.Addr)
}

// CheckRoute reports whether dst would go through the tailnet.
func (n *Node) CheckRoute(ctx context.Context, dst netip.AddrPort) error {
	d := n.srv.Sys().Dialer.Get()
	_, via, err := d.UserDialPlan(ctx, "tcp", dst.String())
	if err != nil {
		return fmt.Errorf("tailnet: dial plan %s: %w", dst, err)
	}
	if !via {
		return &NotRoutedError{Addr: dst.Addr()}
	}
	return nil
}

// warmPingTimeouts bound WarmPath's disco pings, one after another, the
// last repeating. The peer drops pings until it learns the node's keys,
// and a ping in flight holds back the next one to the same peer, so the
// first attempts are short: on headscale, one 200 ms attempt rounded most
// warm-ups up to 200 ms, and 50 ms attempts still rounded more than half
// of them up to 53 ms (warm p50 53 ms over 100 fresh nodes) although the
// router mostly knows the newcomer ~10 ms after Join returns (10 ms
// attempts: p50 13 ms). Later attempts grow, so a far peer (a DERP round
// trip of several hundred ms) still gets time to answer.
var warmPingTimeouts = []time.Duration{
	10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond,
	1600 * time.Millisecond,
}

// WarmPath makes the node's first connection to dst fast. A node that just
// joined is not yet known to its peers: the peer drops its first WireGuard
// handshake and the connection stalls until WireGuard retries, 5 s later
// (seen as 3–33 s "first connection" delays on real tailnets). WarmPath
// readies the peer that carries dst (dst itself, or the subnet router whose
// primary route covers it) in two steps:
//
//  1. it disco-pings the peer until it answers, which happens as soon as
//     the peer has learned the node's keys;
//  2. it opens the WireGuard session with TSMP pings (which go through
//     WireGuard, and which the peer answers whatever its packet filter
//     says), restarting the handshake at once when one is not answered:
//     see openSession.
func (n *Node) WarmPath(ctx context.Context, dst netip.Addr) error {
	st, err := n.lc.Status(ctx)
	if err != nil {
		return &NotRoutedError{Addr: dst}
	}
	return n.warmPath(ctx, st, dst)
}

// warmPath is WarmPath with the node's status read already.
func (n *Node) warmPath(ctx context.Context, st *ipnstate.Status, dst netip.Addr) error {
	peer, ok := servingPeer(st, dst)
	if !ok {
		return &NotRoutedError{Addr: dst}
	}
	ip := peer.TailscaleIPs[0]
	pp := n.peerPath(ip)
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.warm {
		return nil
	}
	rtt, err := n.pingUntilAnswered(ctx, ip)
	if err != nil {
		return fmt.Errorf("tailnet: no answer from %s, the peer serving %s: %w", ip, dst, err)
	}
	if err := n.openSession(ctx, ip, peer.PublicKey, rtt); err != nil {
		return fmt.Errorf("tailnet: no WireGuard session with %s, the peer serving %s: %w", ip, dst, err)
	}
	pp.warm = true
	return nil
}

// peerPath is the node's path to one peer as WarmPath knows it. mu makes
// warm-ups of one peer take turns, so two targets behind the same router
// cannot restart each other's handshakes; warm is set once the peer has
// answered and the WireGuard session is up: it knows this node's keys, so
// connections to it no longer stall, and WarmPath need not warm it again
// for the node's life.
type peerPath struct {
	mu   sync.Mutex
	warm bool
}

// peerPath is the entry for peer, made on first use.
func (n *Node) peerPath(peer netip.Addr) *peerPath {
	n.peerPathsMu.Lock()
	defer n.peerPathsMu.Unlock()
	if n.peerPaths == nil {
		n.peerPaths = map[netip.Addr]*peerPath{}
	}
	pp := n.peerPaths[peer]
	if pp == nil {
		pp = new(peerPath)
		n.peerPaths[peer] = pp
	}
	return pp
}

// pingUntilAnswered disco-pings peer, one ping at a time with the
// timeouts of warmPingTimeouts, until one is answered (its round trip) or
// ctx ends (its error).
func (n *Node) pingUntilAnswered(ctx context.Context, peer netip.Addr) (time.Duration, error) {
	for i := 0; ; i++ {
		pctx, cancel := context.WithTimeout(ctx, warmPingTimeouts[min(i, len(warmPingTimeouts)-1)])
		res, err := n.lc.Ping(pctx, peer, tailcfg.PingDisco)
		cancel()
		if err == nil && res.Err == "" {
			return time.Duration(res.LatencySeconds * float64(time.Second)), nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

// minSessionTimeout is the shortest wait for openSession's first TSMP
// answer: a handshake and a ping, two round trips, plus room for a busy
// host.
//
// A late answer only costs a handshake restarted early: openSession took
// p50 16 ms, p95 48 ms at 100 runs starting at once on the sandbox.
const minSessionTimeout = 100 * time.Millisecond

// openSession makes sure the WireGuard session with peer (node key
// nodeKey, disco round trip rtt) is up, so the first real connection does
// not wait for a handshake that is already lost.
//
// A disco answer does not mean the handshake will work. The peer answers
// the disco ping to wherever it came from, but it has no address of its
// own for a newcomer until control sends it the newcomer's home DERP
// region, until a DERP frame from the newcomer arrives, or until its own
// disco ping is answered, which it starts only when it first has
// something to send. The disco ping goes out over DERP and directly at
// once; the direct answer comes back first, and the handshake initiation
// that follows on the direct path can overtake the ping's DERP copy. The
// peer then drops its handshake response ("Failed to send handshake
// response: no UDP or DERP addr", magicsock endpoint.send), and our
// WireGuard retries only after REKEY_TIMEOUT, 5 s later: 2–4 % of fresh
// nodes on headscale. By then the peer's own pings, started by that failed
// send, have found the path within a millisecond or so.
//
// So openSession TSMP-pings the peer, which starts the handshake, and when
// the answer is late it drops the half-done handshake with the peer from
// the node's WireGuard device (Engine.ResetDevicePeer, what Tailscale does
// when a peer restarts): the next packet starts a fresh handshake at
// once instead of 5 s later. Each attempt waits twice as long as the one
// before, so a slow path is not reset forever.
func (n *Node) openSession(ctx context.Context, peer netip.Addr, nodeKey key.NodePublic, rtt time.Duration) error {
	wait := max(minSessionTimeout, 4*rtt)
	for {
		pctx, cancel := context.WithTimeout(ctx, wait)
		res, err := n.lc.Ping(pctx, peer, tailcfg.PingTSMP)
		cancel()
		if err == nil && res.Err == "" {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if pctx.Err() == nil {
			// Refused at once rather than late (e.g. the peer left):
			// restarting the handshake cannot help.
			if err != nil {
				return err
			}
			return errors.New(res.Err)
		}
		n.srv.Sys().Engine.Get().ResetDevicePeer(nodeKey)
		wait *= 2
	}
}

// servingPeer finds, in the node's status st, the peer that carries dst:
// dst itself, or the subnet router whose primary route covers it.
func servingPeer(st *ipnstate.Status, dst netip.Addr) (*ipnstate.PeerStatus, bool) {
	for _, p := range st.Peer {
		if len(p.TailscaleIPs) == 0 {
			continue
		}
		for _, ip := range p.TailscaleIPs {
			if ip == dst {
				return p, true
			}
		}
		if p.PrimaryRoutes != nil {
			for _, r := range p.PrimaryRoutes.All() {
				if r.Contains(dst) {
					return p, true
				}
			}
		}
	}
	return nil, false
}
