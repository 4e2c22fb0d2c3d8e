package config

import (
	"fmt"
	"maps"
	"reflect"
	"strings"

	"gopkg.in/yaml.v3"
)

// Gateways is the top-level `gateways:` block: named gateways, each a
// port with listeners, in file order (a map would lose it and make error
// order random). HTTP and HTTPS gateways become binds (gateways.go); TLS
// passthrough ones are reached through a `tunnelProtocol: connect` bind
// (see checkEgress).
type Gateways []NamedGateway

// NamedGateway is one entry of `gateways:`.
type NamedGateway struct {
	Name string
	Gateway
}

// Gateway is agentgateway's LocalGateway: a port and named listeners.
// Without listeners the gateway itself is one listener, named after it,
// with the gateway's protocol, tls and policies (gateways.go).
type Gateway struct {
	Pos       Pos               `yaml:"-"`
	Port      int               `yaml:"port,required"`
	Listeners []GatewayListener `yaml:"listeners"`
	// Protocol is HTTP, HTTPS, TLS or TCP; empty means HTTPS when tls is
	// set, else HTTP.
	Protocol string `yaml:"protocol"`
	TLS      *TLS   `yaml:"tls"`
	// Policies are the listener policies agentgateway lets a gateway
	// carry inline, next to port (LocalGatewayPolicy).
	Policies *GatewayPolicies `yaml:"-"`
}

// GatewayListener is one listener of a named gateway, referenced by
// routes as `<gateway>/<name>`.
type GatewayListener struct {
	Pos Pos `yaml:"-"`
	// Name defaults to listener<index>, as in agentgateway.
	Name string `yaml:"name"`
	// Hostname is the host (HTTP) or SNI (TLS) this listener serves:
	// exact, "*.suffix", or "*" / empty for any.
	Hostname string `yaml:"hostname"`
	// Protocol is HTTP, HTTPS or TLS (passthrough: the gateway reads the
	// SNI and never terminates TLS); empty means HTTPS when tls is set,
	// else HTTP.
	Protocol string `yaml:"protocol"`
	TLS      *TLS   `yaml:"tls"`
	// Policies are written inline, next to name (LocalGatewayPolicy).
	Policies *GatewayPolicies `yaml:"-"`
	// policyKey is the first inline policy key and where it was written.
	policyKey string
	policyAt  Pos
}

func (g *Gateway) decodeNode(d *decoder, n *yaml.Node, path string) {
	g.Policies, _, _ = d.decodeInlinePolicies(n, reflectValue(g), path)
}

func (l *GatewayListener) decodeNode(d *decoder, n *yaml.Node, path string) {
	l.Policies, l.policyKey, l.policyAt = d.decodeInlinePolicies(n, reflectValue(l), path)
}

// decodeInlinePolicies decodes n into v, whose own keys are its struct
// fields, and every other key as listener policies (GatewayPolicies, so
// unknown keys and registered policy modules are handled as in a
// listener's policies: block). It returns nil when there are none, else
// the policies and their first key with its position.
func (d *decoder) decodeInlinePolicies(n *yaml.Node, v reflect.Value, path string) (*GatewayPolicies, string, Pos) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected an object, got %s", kindName(n))
		return nil, "", Pos{}
	}
	fields, _ := structFields(v.Type())
	polFields, _ := structFields(gatewayPoliciesType)
	blocks := policyKeys(gatewayPoliciesType)
	own := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	rest := &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		to := rest
		if k := resolve(n.Content[i]); k.Kind == yaml.ScalarNode {
			_, mine := fields[k.Value]
			_, pol := polFields[k.Value]
			_, block := blocks[k.Value]
			switch {
			case mine:
				to = own
			case !pol && !block:
				// Suggest from both key sets: a typo of "protocol" is
				// not a policy.
				all := maps.Clone(fields)
				maps.Copy(all, polFields)
				d.fail(k, join(path, k.Value), "unknown key%s", suggest(k.Value, all, blocks))
				continue
			}
		}
		to.Content = append(to.Content, n.Content[i], n.Content[i+1])
	}
	d.decodeStruct(own, v, path)
	if len(rest.Content) == 0 {
		return nil, "", Pos{}
	}
	p := &GatewayPolicies{}
	d.decodeStruct(rest, reflectValue(p), path)
	k := resolve(rest.Content[0])
	return p, k.Value, Pos{k.Line, k.Column}
}

// TCPRoute is a top-level `tcpRoutes:` entry: which SNI hostnames a
// gateway listener forwards, and where.
type TCPRoute struct {
	Pos       Pos         `yaml:"-"`
	Name      string      `yaml:"name"`
	Namespace string      `yaml:"namespace"`
	Gateways  GatewayRefs `yaml:"gateways"`
	// Hostnames are exact names or "*.suffix" wildcards (any depth, not
	// the suffix itself); empty matches any SNI.
	Hostnames []string     `yaml:"hostnames"`
	Backends  []TCPBackend `yaml:"backends"`

	Policies Unsupported `yaml:"policies"`
}

// TCPBackend is one backend of a TCP route. Only dynamic (dial the SNI
// host on the port the client asked for) is implemented.
type TCPBackend struct {
	Pos     Pos             `yaml:"-"`
	Weight  int             `yaml:"weight"`
	Dynamic *DynamicBackend `yaml:"dynamic"`

	Host     Unsupported `yaml:"host"`
	Service  Unsupported `yaml:"service"`
	Backend  Unsupported `yaml:"backend"`
	Policies Unsupported `yaml:"policies"`
}

// DynamicBackend is `dynamic: {}`. A CEL target expression is not
// implemented: the dial target is always the SNI host.
type DynamicBackend struct {
	Target Unsupported `yaml:"target"`
}

// GatewayRefs is `gateways:` on a route: one "<gateway>[/<listener>]"
// string or a list of them.
type GatewayRefs struct {
	Pos  Pos
	Refs []string
}

func (g *Gateways) decodeNode(d *decoder, n *yaml.Node, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected an object (gateway name: gateway), got %s", kindName(n))
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			d.fail(k, path, "gateway names must be non-empty strings")
			continue
		}
		ng := NamedGateway{Name: k.Value}
		d.decode(n.Content[i+1], reflectValue(&ng.Gateway), join(path, k.Value))
		if ng.Pos.Line == 0 {
			ng.Pos = Pos{k.Line, k.Column}
		}
		*g = append(*g, ng)
	}
}

func (r *GatewayRefs) decodeNode(d *decoder, n *yaml.Node, path string) {
	r.Pos = Pos{n.Line, n.Column}
	if n.Kind == yaml.ScalarNode {
		r.Refs = []string{d.str(n, path)}
		return
	}
	d.decode(n, reflectValue(&r.Refs), path)
}

// listenerName is a gateway listener's name as routes reference it.
func listenerName(l GatewayListener, i int) string {
	if l.Name != "" {
		return l.Name
	}
	return fmt.Sprintf("listener%d", i)
}

// listenerNames are g's listeners' names, each unique in g.
func (d *decoder) listenerNames(g NamedGateway, gp string) []string {
	names := make([]string, len(g.Listeners))
	seen := map[string]bool{}
	for li, l := range g.Listeners {
		names[li] = listenerName(l, li)
		if seen[names[li]] {
			d.failAt(l.Pos, fmt.Sprintf("%s.listeners[%d].name", gp, li), "listener name %q is already used in this gateway", names[li])
		}
		seen[names[li]] = true
	}
	return names
}

// checkEgress checks tunnel binds, gateways and tcpRoutes together: every
// route must name a TLS listener that exists, every hostname must be one
// the runtime can match, and a gateway must be reachable.
func (d *decoder) checkEgress(f *File) {
	tunnels, internal := 0, 0
	for _, b := range f.Binds {
		if b.Mode == "internal" {
			internal++
		}
	}
	ports := map[int]string{}
	for bi := range f.Binds {
		b := &f.Binds[bi]
		bp := b.PathAt(bi)
		ports[b.Port] = bp
		switch b.TunnelProtocol {
		case "", "direct":
		case "connect":
			tunnels++
			if len(b.Listeners) > 0 {
				d.failAt(b.Pos, bp+".listeners", "a tunnelProtocol: connect bind takes no listeners in tailgate yet (CONNECT over TLS is not supported); use listeners: []")
			}
			if len(f.Gateways) == 0 && internal == 0 {
				d.failAt(b.Pos, bp+".tunnelProtocol", "a connect bind hands each tunnel to the top-level gateways: entry (TLS passthrough) or the mode: internal bind on the requested port, and none is configured")
			}
		case "hboneWaypoint", "hboneGateway", "proxy":
			d.failAt(b.Pos, bp+".tunnelProtocol", "%s is not supported by tailgate yet", b.TunnelProtocol)
		default:
			d.failAt(b.Pos, bp+".tunnelProtocol", "expected direct or connect, got %q", b.TunnelProtocol)
		}
	}
	listeners := map[string]bool{} // "gw/listener" and "gw"
	for _, g := range f.Gateways {
		gp := join("gateways", g.Name)
		if strings.Contains(g.Name, "/") {
			d.failAt(g.Pos, gp, "a gateway name cannot contain /")
		}
		if g.Port < 1 || g.Port > 65535 {
			d.failAt(g.Pos, gp+".port", "port must be between 1 and 65535, got %d", g.Port)
		} else if prev, dup := ports[g.Port]; dup {
			d.failAt(g.Pos, gp+".port", "port %d is already used by %s", g.Port, prev)
		}
		ports[g.Port] = gp
		switch g.Protocol {
		case "", "HTTP", "HTTPS", "TLS", "TCP":
		default:
			d.failAt(g.Pos, gp+".protocol", "expected HTTP, HTTPS, TCP or TLS, got %q", g.Protocol)
		}
		if len(g.Listeners) == 0 {
			d.failAt(g.Pos, gp+".listeners", "a protocol: %s gateway needs listeners in tailgate (TLS passthrough listeners with hostnames)", g.Protocol)
		}
		if g.TLS != nil || g.Policies != nil || (len(g.Listeners) > 0 && g.Protocol != "") {
			d.failAt(g.Pos, gp, "a TLS passthrough gateway takes only port and listeners in tailgate")
		}
		if tunnels == 0 {
			d.failAt(g.Pos, gp, "tailgate serves gateways only through a tunnelProtocol: connect bind; add one (the gateway's own port is not opened)")
		}
		listeners[g.Name] = true
		names := d.listenerNames(g, gp)
		for li, l := range g.Listeners {
			lp := fmt.Sprintf("%s.listeners[%d]", gp, li)
			listeners[g.Name+"/"+names[li]] = true
			switch l.Protocol {
			case "TLS":
				if l.TLS != nil {
					d.failAt(l.TLS.Pos, lp+".tls", "terminating TLS on a protocol: TLS listener is not supported by tailgate yet (it passes TLS through)")
				}
				if l.Policies != nil {
					d.failAt(l.policyAt, join(lp, l.policyKey), "HTTP policies on a TLS passthrough listener are not supported by tailgate yet")
				}
			case "HTTP", "HTTPS", "":
				d.failAt(l.Pos, lp+".protocol", "this gateway has TLS passthrough listeners; mixing them with HTTP or HTTPS listeners on one port is not supported by tailgate yet")
			case "TCP":
				d.failAt(l.Pos, lp+".protocol", "protocol %s on a gateways: listener is not supported by tailgate yet", l.Protocol)
			default:
				d.failAt(l.Pos, lp+".protocol", "expected HTTP, HTTPS, TCP or TLS, got %q", l.Protocol)
			}
			if h := l.Hostname; h != "" && h != "*" {
				if msg := badHostname(h); msg != "" {
					d.failAt(l.Pos, lp+".hostname", "%s", msg)
				}
			}
		}
	}
	for ri := range f.TCPRoutes {
		r := &f.TCPRoutes[ri]
		rp := fmt.Sprintf("tcpRoutes[%d]", ri)
		if len(r.Gateways.Refs) == 0 {
			d.failAt(r.Pos, rp+".gateways", "a tcpRoute must name its gateways (<gateway>/<listener>)")
		}
		for i, ref := range r.Gateways.Refs {
			if !listeners[ref] && d.httpGateways[ref] {
				d.failAt(r.Gateways.Pos, rp+".gateways", "%q is an HTTP gateway listener; tcpRoutes attach to protocol: TLS listeners (HTTP routes go in routes:)", ref)
			} else if !listeners[ref] {
				p := rp + ".gateways"
				if len(r.Gateways.Refs) > 1 {
					p = fmt.Sprintf("%s[%d]", p, i)
				}
				d.failAt(r.Gateways.Pos, p, "no gateway or gateway listener %q in gateways:", ref)
			}
		}
		for i, h := range r.Hostnames {
			if msg := badHostname(h); msg != "" {
				d.failAt(r.Pos, fmt.Sprintf("%s.hostnames[%d]", rp, i), "%s", msg)
			}
		}
		if len(r.Backends) != 1 {
			d.failAt(r.Pos, rp+".backends", "tailgate needs exactly one backend (dynamic: {}), got %d", len(r.Backends))
		}
		for bi := range r.Backends {
			if r.Backends[bi].Dynamic == nil {
				d.failAt(r.Backends[bi].Pos, fmt.Sprintf("%s.backends[%d]", rp, bi), "expected dynamic: {} (the only TCP backend tailgate runs)")
			}
		}
	}
}

// badHostname says what is wrong with a route or listener hostname, or ""
// when it is an exact DNS name or a "*.suffix" wildcard.
func badHostname(h string) string {
	name := strings.TrimPrefix(h, "*.")
	if name == "" || strings.ContainsAny(name, "*:/ ") || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return fmt.Sprintf("expected a hostname like api.example.com or *.example.com, got %q", h)
	}
	return ""
}
