// Package peerfilter decides what each node of a tailnet is told under its
// policy: which other nodes are its peers, and which packets its packet
// filter lets in. It is the "mapper" half of policy enforcement for the
// sandbox's control server; the policy itself is parsed and resolved to
// addresses elsewhere (fake.AccessRules).
//
// It follows what Tailscale and headscale send:
//
//   - a node's filter holds the rules whose destinations are its own
//     addresses or the subnet routes it serves (approved routes), each cut
//     down to those destinations; nothing else is let in.
//   - two nodes are peers when either may send to the other (a subnet
//     router counts as a destination for the routes it serves). Nodes that
//     may not reach each other in either direction do not even learn of
//     each other, which keeps netmaps small: runner nodes of one
//     environment, which only reach targets, are not each other's peers.
//
// App capabilities (grants' "app") become CapGrant rules; they do not make
// nodes peers on their own.
package peerfilter

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strings"

	"tailscale.com/tailcfg"

	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// Node is one node of the tailnet as the filter sees it.
type Node struct {
	ID        tailcfg.StableNodeID
	Addresses []netip.Prefix // its tailnet addresses
	Routes    []netip.Prefix // approved subnet routes it serves
}

// View is every node's filter and peers under one set of rules. It is
// immutable once computed.
type View struct {
	filters map[tailcfg.StableNodeID][]tailcfg.FilterRule
	// admits[n] are the source prefixes n's filter lets in on some port.
	admits map[tailcfg.StableNodeID][]netip.Prefix
	addrs  map[tailcfg.StableNodeID][]netip.Prefix
	// told[n] sums up what the policy tells n: its peers and its filter.
	told map[tailcfg.StableNodeID]string
}

// Compute builds the view of nodes under rules.
func Compute(nodes []Node, rules []fake.AccessRule) *View {
	v := &View{
		filters: make(map[tailcfg.StableNodeID][]tailcfg.FilterRule, len(nodes)),
		admits:  make(map[tailcfg.StableNodeID][]netip.Prefix, len(nodes)),
		addrs:   make(map[tailcfg.StableNodeID][]netip.Prefix, len(nodes)),
		told:    make(map[tailcfg.StableNodeID]string, len(nodes)),
	}
	for _, n := range nodes {
		v.addrs[n.ID] = n.Addresses
		served := append(slices.Clone(n.Addresses), n.Routes...)
		var filter []tailcfg.FilterRule
		for _, r := range rules {
			dsts := intersect(r.Dst, served)
			if len(dsts) == 0 {
				continue
			}
			srcs := srcStrings(r.Src)
			filter = append(filter, portRules(srcs, dsts, r.Ports)...)
			if len(r.Ports) > 0 {
				v.admits[n.ID] = append(v.admits[n.ID], r.Src...)
			}
			if len(r.Caps) > 0 {
				filter = append(filter, tailcfg.FilterRule{
					SrcIPs:   srcs,
					CapGrant: []tailcfg.CapGrant{{Dsts: dsts, CapMap: capMap(r.Caps)}},
				})
			}
		}
		v.filters[n.ID] = filter
	}
	for _, n := range nodes {
		var told strings.Builder
		for _, o := range nodes {
			if o.ID != n.ID && v.Peers(n.ID, o.ID) {
				told.WriteString(string(o.ID))
				told.WriteByte(' ')
			}
		}
		f, _ := json.Marshal(v.filters[n.ID])
		told.Write(f)
		v.told[n.ID] = told.String()
	}
	return v
}

// Told sums up what the view tells node id (its peers and its filter) in
// a string that is equal for two views exactly when they tell it the same:
// a control server need not send a node a new map for a new view that
// tells it nothing new.
func (v *View) Told(id tailcfg.StableNodeID) string {
	return v.told[id]
}

// Filter is the packet filter of node id: the rules that let packets (and
// app capabilities) into it. Nil means nothing may reach it.
func (v *View) Filter(id tailcfg.StableNodeID) []tailcfg.FilterRule {
	return v.filters[id]
}

// Known reports whether id is a node of the view.
func (v *View) Known(id tailcfg.StableNodeID) bool {
	_, ok := v.addrs[id]
	return ok
}

// Peers reports whether a and b are each other's peers: either may send
// packets to the other.
func (v *View) Peers(a, b tailcfg.StableNodeID) bool {
	return v.admitsAny(a, v.addrs[b]) || v.admitsAny(b, v.addrs[a])
}

// admitsAny reports whether n's filter lets in packets from any of addrs.
func (v *View) admitsAny(n tailcfg.StableNodeID, addrs []netip.Prefix) bool {
	for _, src := range v.admits[n] {
		for _, a := range addrs {
			if src.Overlaps(a) {
				return true
			}
		}
	}
	return false
}

// intersect returns the parts of want that fall within have: the
// narrower of each overlapping pair.
func intersect(want, have []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, w := range want {
		for _, h := range have {
			if !w.Overlaps(h) {
				continue
			}
			p := w
			if h.Bits() > w.Bits() {
				p = h
			}
			if !slices.Contains(out, p) {
				out = append(out, p)
			}
		}
	}
	return out
}

// srcStrings renders sources for FilterRule.SrcIPs, "*" for everything.
func srcStrings(srcs []netip.Prefix) []string {
	out := make([]string, 0, len(srcs))
	for _, p := range srcs {
		s := p.String()
		if p.Bits() == 0 {
			s = "*"
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// portRules turns port ranges into filter rules, one per protocol: a
// FilterRule's IPProto applies to all its DstPorts.
func portRules(srcs []string, dsts []netip.Prefix, ports []fake.PortRange) []tailcfg.FilterRule {
	var out []tailcfg.FilterRule
	byProto := map[int]int{} // proto → index in out
	for _, pr := range ports {
		i, ok := byProto[pr.Proto]
		if !ok {
			r := tailcfg.FilterRule{SrcIPs: srcs}
			if pr.Proto != fake.AnyProto {
				r.IPProto = []int{pr.Proto}
			}
			out = append(out, r)
			i = len(out) - 1
			byProto[pr.Proto] = i
		}
		for _, d := range dsts {
			out[i].DstPorts = append(out[i].DstPorts, tailcfg.NetPortRange{
				IP:    d.String(),
				Ports: tailcfg.PortRange{First: pr.First, Last: pr.Last},
			})
		}
	}
	return out
}

func capMap(caps map[string][]json.RawMessage) tailcfg.PeerCapMap {
	m := make(tailcfg.PeerCapMap, len(caps))
	for name, vals := range caps {
		for _, v := range vals {
			m[tailcfg.PeerCapability(name)] = append(m[tailcfg.PeerCapability(name)], tailcfg.RawMessage(v))
		}
	}
	return m
}
