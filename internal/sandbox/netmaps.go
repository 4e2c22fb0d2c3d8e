package sandbox

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"maps"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"tailscale.com/tailcfg"
	"tailscale.com/tstest/integration/testcontrol"
	"tailscale.com/types/key"

	"github.com/tailgate-dev/tailgate/internal/sandbox/peerfilter"
	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// netmaps serves map requests in place of testcontrol's own map stream,
// so that every node's peers and packet filter follow the tailnet policy
// stored in the API stand-in.
//
// testcontrol computes the full map response (Server.MapResponse); the
// sandbox then drops the peers the node may neither reach nor be reached
// by and replaces the allow-all packet filter with the policy's rules for
// that node. Because it takes over the stream, it also does what
// testcontrol's stream does that matters here: record endpoints, DERP
// home and Hostinfo from non-streaming updates, send keep-alives, and
// re-send maps when a node, a route or the policy changes.
type netmaps struct {
	s *Sandbox

	mu      sync.Mutex
	view    *peerfilter.View // nil: recompute on next use
	changed chan struct{}    // closed and replaced on every change
	// gen counts nodesChanged calls, versions each node's own updates
	// (endpoints, routes, keys). A stream skips computing its node's map
	// when neither what the view tells the node nor any of its peers
	// changed, so that a join or an update costs work for the peers it
	// concerns, not for every node of the tailnet.
	gen      uint64
	versions map[tailcfg.StableNodeID]uint64
	keys     map[key.NodePublic]bool // node keys that have sent a map request
	// polling counts each node's open map long-polls: a node holding one
	// is on the tailnet, whatever DERP's view of it.
	polling map[key.NodePublic]int

	// updateMu serialises read-modify-writes of testcontrol's node
	// records, which testcontrol hands out as copies.
	updateMu sync.Mutex
}

func newNetmaps(s *Sandbox) *netmaps {
	return &netmaps{
		s:        s,
		changed:  make(chan struct{}),
		versions: map[tailcfg.StableNodeID]uint64{},
		keys:     map[key.NodePublic]bool{},
		polling:  map[key.NodePublic]int{},
	}
}

// nodesChanged is for changes of who is on the tailnet, what they are
// called (tags, addresses), their routes or the policy: the view is
// recomputed and every node gets a new map.
func (m *netmaps) nodesChanged() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.view = nil
	m.gen++
	m.notifyLocked()
}

// nodeUpdated is for a change of node id that its peers must hear of
// (endpoints, DERP home, key, routes).
func (m *netmaps) nodeUpdated(id tailcfg.StableNodeID) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.versions[id]++
	m.notifyLocked()
}

// newKey reports whether k sends its first map request, and records it.
func (m *netmaps) newKey(k key.NodePublic) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.keys[k] {
		return false
	}
	m.keys[k] = true
	return true
}

func (m *netmaps) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// current returns the view and the stamp of the state it and testcontrol's
// records are at (or newer than).
func (m *netmaps) current() (*peerfilter.View, stamp) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.viewLocked(), stamp{gen: m.gen, versions: maps.Clone(m.versions)}
}

func (m *netmaps) viewLocked() *peerfilter.View {
	if m.view == nil {
		m.view = m.compute()
	}
	return m.view
}

// isPolling reports whether node k holds a map long-poll.
func (m *netmaps) isPolling(k key.NodePublic) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.polling[k] > 0
}

func (m *netmaps) addPoll(k key.NodePublic, delta int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.polling[k] += delta; m.polling[k] <= 0 {
		delete(m.polling, k)
	}
}

// nextChange returns a channel closed on the next change.
func (m *netmaps) nextChange() <-chan struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.changed
}

// stamp is the state one node's map was computed from: the view's
// generation, what it told the node, and the versions of the node and
// its peers.
type stamp struct {
	gen      uint64
	told     string
	versions map[tailcfg.StableNodeID]uint64
}

// unchangedSince reports whether node self's map computed at st would
// still be the same, and if so moves st to the current generation.
func (m *netmaps) unchangedSince(st *stamp, self tailcfg.StableNodeID) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.gen != m.gen {
		if m.viewLocked().Told(self) != st.told {
			return false
		}
	}
	for id, v := range st.versions {
		if m.versions[id] != v {
			return false
		}
	}
	st.gen = m.gen
	return true
}

// compute resolves the stored policy against the live devices. A policy
// that does not resolve grants nothing.
func (m *netmaps) compute() *peerfilter.View {
	devices := sandboxTailnet{m.s}.Devices()
	rules, err := fake.AccessRules(m.s.api.fake.Policy(), devices)
	if err != nil {
		m.s.logf("sandbox: tailnet policy not applied, nothing is allowed: %v", err)
	}
	nodes := make([]peerfilter.Node, 0, len(devices))
	for _, d := range devices {
		n := peerfilter.Node{ID: tailcfg.StableNodeID(d.NodeID)}
		for _, a := range d.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				n.Addresses = append(n.Addresses, netip.PrefixFrom(ip, ip.BitLen()))
			}
		}
		for _, r := range d.EnabledRoutes {
			if p, err := netip.ParsePrefix(r); err == nil {
				n.Routes = append(n.Routes, p)
			}
		}
		nodes = append(nodes, n)
	}
	return peerfilter.Compute(nodes, rules)
}

// serveMap is the sandbox's testcontrol.AltMapStream.
func (m *netmaps) serveMap(ctx context.Context, w testcontrol.MapStreamWriter, req *tailcfg.MapRequest) {
	node := m.s.control.Node(req.NodeKey)
	if node == nil {
		return // the client sees the stream end and registers again
	}
	// As in testcontrol: a streaming request of a current client (version
	// 68+) is read-only; updates come in separate non-streaming requests.
	if !req.ReadOnly && !(req.Stream && req.Version >= 68) {
		if ctx.Err() != nil {
			return // canceled: its contents may be older than a later request's
		}
		m.applyUpdate(req)
	}
	switch view, _ := m.current(); {
	case !view.Known(node.StableID):
		m.nodesChanged() // a node that registered since the view was computed
	case m.newKey(req.NodeKey):
		m.nodeUpdated(node.StableID) // a known node under a new key
	}

	streaming := req.Stream && !req.ReadOnly
	if streaming {
		m.addPoll(req.NodeKey, 1)
		defer m.addPoll(req.NodeKey, -1)
	}
	keepAlive := 50*time.Second + rand.N(8*time.Second)
	var (
		last      []byte
		lastPeers []tailcfg.NodeID
		sent      *stamp
	)
	for {
		changed := m.nextChange()
		if sent == nil || !m.unchangedSince(sent, node.StableID) {
			view, st := m.current() // before computing: a later change is seen as one
			res, err := m.mapResponse(req, view)
			if err != nil || res == nil {
				return
			}
			b, err := json.Marshal(res)
			if err != nil {
				return
			}
			peers := make([]tailcfg.NodeID, 0, len(res.Peers))
			mine := stamp{gen: st.gen, told: view.Told(node.StableID), versions: map[tailcfg.StableNodeID]uint64{node.StableID: st.versions[node.StableID]}}
			for _, p := range res.Peers {
				peers = append(peers, p.ID)
				mine.versions[p.StableID] = st.versions[p.StableID]
			}
			sent = &mine
			if !bytes.Equal(b, last) {
				// An empty Peers list means "unchanged" to the client:
				// losing the last peer must be said explicitly.
				if len(peers) == 0 {
					res.PeersRemoved = lastPeers
				}
				if err := w.SendMapMessage(res); err != nil {
					return
				}
				last, lastPeers = b, peers
			}
		}
		if !streaming {
			return
		}
		t := time.NewTimer(keepAlive)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-changed:
			t.Stop()
		case <-t.C:
			if err := w.SendMapMessage(&tailcfg.MapResponse{KeepAlive: true}); err != nil {
				return
			}
		}
	}
}

// applyUpdate records what a non-streaming map request reports about its
// node, as testcontrol's own stream does. Tags are not touched: they are
// set at registration, as a real control server does between
// re-authentications.
func (m *netmaps) applyUpdate(req *tailcfg.MapRequest) {
	m.updateMu.Lock()
	defer m.updateMu.Unlock()
	n := m.s.control.Node(req.NodeKey)
	if n == nil {
		return
	}
	n.Endpoints = req.Endpoints
	n.DiscoKey = req.DiscoKey
	n.Cap = req.Version
	if req.Hostinfo != nil {
		hi := req.Hostinfo.View()
		n.Hostinfo = hi
		if ni := hi.NetInfo(); ni.Valid() && ni.PreferredDERP() != 0 {
			n.HomeDERP = ni.PreferredDERP()
		}
	}
	m.s.control.UpdateNode(n)
	m.nodeUpdated(n.StableID)
}

// updateNode changes testcontrol's record of a node (e.g. expires its
// key) without racing applyUpdate, and re-sends the maps that show it.
func (m *netmaps) updateNode(k key.NodePublic, change func(*tailcfg.Node)) {
	m.updateMu.Lock()
	n := m.s.control.Node(k)
	if n != nil {
		change(n)
		m.s.control.UpdateNode(n)
	}
	m.updateMu.Unlock()
	if n != nil {
		m.nodeUpdated(n.StableID)
	}
	m.nodesChanged()
}

// mapResponse is testcontrol's map response for req, cut down to the
// policy: only the node's peers, and its own packet filter.
func (m *netmaps) mapResponse(req *tailcfg.MapRequest, view *peerfilter.View) (*tailcfg.MapResponse, error) {
	res, err := m.s.control.MapResponse(req)
	if err != nil || res == nil {
		return res, err
	}
	self := res.Node.StableID
	res.Peers = slices.DeleteFunc(res.Peers, func(p *tailcfg.Node) bool {
		return !view.Peers(self, p.StableID)
	})
	// Keep testcontrol's capability-only rules (the ingress capability,
	// SetGlobalAppCaps); they let no packet in. Replace the allow-all.
	filter := slices.DeleteFunc(res.PacketFilter, func(r tailcfg.FilterRule) bool {
		return len(r.DstPorts) > 0
	})
	res.PacketFilter = append(filter, view.Filter(self)...)
	// testcontrol lists user profiles from a map; a stable order lets an
	// unchanged map be recognised and not sent again.
	slices.SortFunc(res.UserProfiles, func(a, b tailcfg.UserProfile) int { return cmp.Compare(a.ID, b.ID) })
	return res, nil
}
