package config

import (
	"fmt"
	"strings"
)

// GatewayRoute is a top-level `routes:` entry: an HTTP route (the same
// keys as a listener's routes) attached to named gateways or gateway
// listeners. Without gateways it attaches to the gateway named
// "default", as in agentgateway.
type GatewayRoute struct {
	Gateways GatewayRefs `yaml:"gateways"`
	Route    `yaml:",inline"`
}

// NamedBackend is a top-level `backends:` entry: a backend (host or mcp,
// with its policies) that routes refer to with `backend: <name>`.
type NamedBackend struct {
	Name    string `yaml:"name,required"`
	Backend `yaml:",inline"`
}

// SimpleMCPPath is where the top-level mcp: block's route and backend
// were written.
const SimpleMCPPath = "mcp"

// checkNamedBackends checks the top-level backends: once, where they were
// written, and indexes them by name for routes' references.
func (d *decoder) checkNamedBackends(f *File) {
	d.named = map[string]*NamedBackend{}
	for i := range f.Backends {
		nb := &f.Backends[i]
		bp := fmt.Sprintf("backends[%d]", i)
		nb.YAMLPath = bp
		if nb.Name == "" {
			d.failAt(nb.Pos, bp+".name", "a backend name must not be empty")
		} else if prev, dup := d.named[nb.Name]; dup {
			d.failAt(nb.Pos, bp+".name", "backend name %q is already used by %s", nb.Name, prev.YAMLPath)
		}
		if nb.Weight != nil {
			d.failAt(nb.Pos, bp+".weight", "weight belongs on a route's backend: reference, not on the named backend")
		}
		if nb.Backend.Backend != "" {
			d.failAt(nb.Pos, bp+".backend", "a named backend cannot refer to another one")
		}
		d.checkBackendKind(&nb.Backend, bp, bp+".mcp")
		if nb.Policies != nil {
			d.checkBackendPolicies(nb.Policies, nb.MCP != nil, bp+".policies")
		}
		if _, dup := d.named[nb.Name]; !dup {
			d.named[nb.Name] = nb
		}
	}
}

// resolveBackend fills a route's `backend: <name>` reference from the
// named backend, so the gateway serves it exactly like an inline one. It
// reports whether the policies came from the named backend (and so were
// checked there).
func (d *decoder) resolveBackend(b *Backend, bp string) (inherited bool) {
	nb, ok := d.named[b.Backend]
	switch {
	case !ok:
		d.failAt(b.Pos, bp+".backend", "no backend named %q in the top-level backends:", b.Backend)
		return false
	case b.Host != "" || b.MCP != nil || b.Dynamic != nil:
		d.failAt(b.Pos, bp, "set one of backend, host, mcp or dynamic, not several")
		return false
	}
	b.YAMLPath = nb.YAMLPath
	if d.hasErrorUnder(nb.YAMLPath) {
		return false // reported where it was written
	}
	b.Host, b.MCP, b.Dynamic = nb.Host, nb.MCP, nb.Dynamic
	if b.Policies == nil {
		b.Policies = nb.Policies
		return true
	}
	if nb.Policies != nil {
		d.failAt(b.Pos, bp+".policies", "%s has policies of its own; combining them with the reference's is not supported by tailgate yet (set them in one place)", nb.YAMLPath)
	}
	return false
}

// checkBackendKind checks that a backend has exactly one kind; mp is
// where its mcp keys were written.
func (d *decoder) checkBackendKind(b *Backend, bp, mp string) {
	switch {
	case (b.Host != "") && b.MCP != nil, b.Dynamic != nil && (b.Host != "" || b.MCP != nil):
		d.failAt(b.Pos, bp, "set one of host, mcp or dynamic, not several")
	case b.Dynamic != nil:
	case b.MCP != nil:
		d.checkMCP(b.MCP, mp)
	case b.Host == "" && !d.hasErrorUnder(bp):
		d.failAt(b.Pos, bp, "backend needs host: <host:port>, mcp: {targets: [...]} or backend: <name of a top-level backends: entry>")
	}
}

// isHTTPGateway reports whether all of g's listeners (or g itself, when
// it has none) speak HTTP or HTTPS.
func isHTTPGateway(g NamedGateway) bool {
	if len(g.Listeners) == 0 {
		return g.Protocol == "" || g.Protocol == "HTTP" || g.Protocol == "HTTPS"
	}
	for _, l := range g.Listeners {
		if l.Protocol != "" && l.Protocol != "HTTP" && l.Protocol != "HTTPS" {
			return false
		}
	}
	return true
}

// gatewayProtocol is agentgateway's default: HTTPS when tls is set, else
// HTTP.
func gatewayProtocol(p string, tls *TLS) string {
	switch {
	case p != "":
		return p
	case tls != nil:
		return "HTTPS"
	}
	return "HTTP"
}

// addGateways turns HTTP and HTTPS gateways into binds, as agentgateway
// does (local.rs, convert_gateways): one bind per gateway port; a
// gateway without listeners is one listener named after the gateway,
// otherwise listener i is named "<gateway>/<name or listener<i>>". Each
// top-level route is checked once, where it was written, then copied
// onto every listener its gateways name (a bare gateway name means all
// of its listeners). The binds are then served by the one code path
// binds: use; so is the mcp: block when attachMCP. TLS passthrough
// gateways are left for checkEgress.
func (d *decoder) addGateways(f *File, attachMCP bool) {
	type at struct{ bind, listener int }
	attach := map[string][]at{} // "gw" and "gw/listener"
	passthrough := map[string]bool{}
	var keep Gateways
	for _, g := range f.Gateways {
		if !isHTTPGateway(g) {
			keep = append(keep, g)
			passthrough[g.Name] = true
			for li, l := range g.Listeners {
				passthrough[g.Name+"/"+listenerName(l, li)] = true
			}
			continue
		}
		gp := join("gateways", g.Name)
		if strings.Contains(g.Name, "/") {
			d.failAt(g.Pos, gp, "a gateway name cannot contain /")
		}
		bi := len(f.Binds)
		b := Bind{Pos: g.Pos, Port: g.Port, YAMLPath: gp}
		if len(g.Listeners) == 0 {
			b.Listeners = []Listener{{
				Pos: g.Pos, Name: g.Name, YAMLPath: gp,
				Protocol: gatewayProtocol(g.Protocol, g.TLS), TLS: g.TLS, Policies: g.Policies,
			}}
			attach[g.Name] = []at{{bi, 0}}
		} else if g.Protocol != "" || g.TLS != nil || g.Policies != nil {
			d.failAt(g.Pos, gp, "a gateway with listeners cannot set protocol, tls or policies itself; set them on each listener")
		}
		names := d.listenerNames(g, gp)
		for li, l := range g.Listeners {
			lp := fmt.Sprintf("%s.listeners[%d]", gp, li)
			name := names[li]
			host := l.Hostname
			if host == "*" {
				host = ""
			}
			if host != "" {
				if msg := badHostname(host); msg != "" {
					d.failAt(l.Pos, lp+".hostname", "%s", msg)
				}
			}
			b.Listeners = append(b.Listeners, Listener{
				Pos: l.Pos, Name: g.Name + "/" + name, YAMLPath: lp, Hostname: host,
				Protocol: gatewayProtocol(l.Protocol, l.TLS), TLS: l.TLS, Policies: l.Policies,
			})
			attach[g.Name+"/"+name] = []at{{bi, li}}
			attach[g.Name] = append(attach[g.Name], at{bi, li})
		}
		f.Binds = append(f.Binds, b)
	}
	f.Gateways = keep
	d.httpGateways = map[string]bool{}
	for ref := range attach {
		d.httpGateways[ref] = true
	}
	// attachRoute copies r (checked) onto every listener refs names.
	attachRoute := func(r Route, refs GatewayRefs, path string) {
		names := refs.Refs
		if len(names) == 0 {
			if _, ok := attach["default"]; !ok {
				d.failAt(r.Pos, path+".gateways", "a route must name its gateways (<gateway> or <gateway>/<listener>); only an HTTP gateway named default is implied")
				return
			}
			names = []string{"default"}
		}
		done := map[at]bool{}
		for i, ref := range names {
			ats, ok := attach[ref]
			if !ok {
				p := path + ".gateways"
				if len(names) > 1 {
					p = fmt.Sprintf("%s[%d]", p, i)
				}
				if passthrough[ref] {
					d.failAt(refs.Pos, p, "%q is a TLS passthrough gateway listener; routes attach to HTTP or HTTPS ones (tcpRoutes attach to TLS ones)", ref)
				} else {
					d.failAt(refs.Pos, p, "no HTTP gateway or gateway listener %q in gateways:", ref)
				}
				continue
			}
			for _, a := range ats {
				if done[a] {
					continue
				}
				done[a] = true
				c := r
				c.checked = true
				l := &f.Binds[a.bind].Listeners[a.listener]
				l.Routes = append(l.Routes, c)
			}
		}
	}
	for ri := range f.Routes {
		r := &f.Routes[ri]
		rp := fmt.Sprintf("routes[%d]", ri)
		r.YAMLPath = rp
		d.checkRoute(&r.Route, rp)
		attachRoute(r.Route, r.Gateways, rp)
	}
	if m := f.MCP; attachMCP {
		if m.Port != 0 {
			d.failAt(m.Pos, SimpleMCPPath+".gateways", "mcp.gateways cannot be used with mcp.port")
		}
		r := attachedMCPRoute(m)
		d.checkRoute(&r, SimpleMCPPath)
		attachRoute(r, m.Gateways, SimpleMCPPath)
	}
}

// mcpAttaches reports whether the mcp: block is a route on named
// gateways rather than a bind of its own: it names gateways, or it has
// no port and an HTTP gateway named default exists (agentgateway's
// apply_implicit_default_gateway).
func mcpAttaches(f *File, m *SimpleMCP) bool {
	if len(m.Gateways.Refs) > 0 {
		return true
	}
	if m.Port != 0 {
		return false
	}
	for _, g := range f.Gateways {
		if g.Name == "default" {
			return isHTTPGateway(g)
		}
	}
	return false
}

// attachedMCPRoute is the route the mcp: block becomes on a shared
// gateway: MCP's paths only (/mcp, /sse and /.well-known for OAuth
// metadata), so it can sit next to other routes, as in agentgateway.
func attachedMCPRoute(m *SimpleMCP) Route {
	mb := m.MCPBackend
	mb.Pos = m.Pos
	var matches []Match
	for _, p := range []string{"/mcp", "/sse", "/.well-known"} {
		matches = append(matches, Match{Pos: m.Pos, Path: &PathMatch{Pos: m.Pos, Prefix: &p}})
	}
	return Route{
		Pos: m.Pos, Name: "default", YAMLPath: SimpleMCPPath, Matches: matches,
		Policies: m.Policies,
		Backends: []Backend{{Pos: m.Pos, MCP: &mb}},
	}
}
