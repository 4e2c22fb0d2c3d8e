package config

import (
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Gateways is the top-level `gateways:` block: named gateways, each a
// port with listeners, in file order (a map would lose it and make error
// order random). tailgate runs TLS passthrough listeners only, reached
// through a `tunnelProtocol: connect` bind (see checkEgress).
type Gateways []NamedGateway

// NamedGateway is one entry of `gateways:`.
type NamedGateway struct {
	Name string
	Gateway
}

// Gateway is agentgateway's LocalGateway: a port and named listeners.
type Gateway struct {
	Pos       Pos               `yaml:"-"`
	Port      int               `yaml:"port,required"`
	Listeners []GatewayListener `yaml:"listeners"`

	Protocol              Unsupported `yaml:"protocol"`
	TLS                   Unsupported `yaml:"tls"`
	GatewayHTTPPolicyKeys `yaml:",inline"`
}

// GatewayHTTPPolicyKeys are the HTTP policies agentgateway lets a named
// gateway or its listener carry inline (LocalGatewayPolicy). They apply
// to HTTP listeners, which tailgate does not run under gateways: yet.
type GatewayHTTPPolicyKeys struct {
	OIDC            Unsupported `yaml:"oidc"`
	JWTAuth         Unsupported `yaml:"jwtAuth"`
	Authorization   Unsupported `yaml:"authorization"`
	ExtAuthz        Unsupported `yaml:"extAuthz"`
	ExtProc         Unsupported `yaml:"extProc"`
	CORS            Unsupported `yaml:"cors"`
	Transformations Unsupported `yaml:"transformations"`
	BasicAuth       Unsupported `yaml:"basicAuth"`
	APIKey          Unsupported `yaml:"apiKey"`
	CSRF            Unsupported `yaml:"csrf"`
}

// GatewayListener is one listener of a named gateway, referenced by
// routes as `<gateway>/<name>`.
type GatewayListener struct {
	Pos Pos `yaml:"-"`
	// Name defaults to listener<index>, as in agentgateway.
	Name string `yaml:"name"`
	// Hostname is the SNI this listener serves: exact, "*.suffix", or
	// "*" / empty for any.
	Hostname string `yaml:"hostname"`
	// Protocol must be TLS (passthrough: the gateway reads the SNI and
	// never terminates TLS).
	Protocol string `yaml:"protocol"`

	TLS                   Unsupported `yaml:"tls"`
	GatewayHTTPPolicyKeys `yaml:",inline"`
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

// checkEgress checks tunnel binds, gateways and tcpRoutes together: every
// route must name a TLS listener that exists, every hostname must be one
// the runtime can match, and a gateway must be reachable.
func (d *decoder) checkEgress(f *File) {
	tunnels := 0
	ports := map[int]string{}
	for bi := range f.Binds {
		b := &f.Binds[bi]
		bp := fmt.Sprintf("binds[%d]", bi)
		ports[b.Port] = bp
		switch b.TunnelProtocol {
		case "", "direct":
		case "connect":
			tunnels++
			if len(b.Listeners) > 0 {
				d.failAt(b.Pos, bp+".listeners", "a tunnelProtocol: connect bind takes no listeners in tailgate yet (CONNECT over TLS is not supported); use listeners: []")
			}
			if len(f.Gateways) == 0 {
				d.failAt(b.Pos, bp+".tunnelProtocol", "a connect bind hands each tunnel to the top-level gateways: entry (TLS passthrough) on the requested port, and none is configured; tunnels into mode: internal binds (TLS interception) are not supported by tailgate yet")
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
		if len(g.Listeners) == 0 {
			d.failAt(g.Pos, gp+".listeners", "a gateway needs listeners (tailgate runs protocol: TLS listeners)")
		}
		if tunnels == 0 {
			d.failAt(g.Pos, gp, "tailgate serves gateways only through a tunnelProtocol: connect bind; add one (the gateway's own port is not opened)")
		}
		listeners[g.Name] = true
		seen := map[string]bool{}
		for li, l := range g.Listeners {
			lp := fmt.Sprintf("%s.listeners[%d]", gp, li)
			name := listenerName(l, li)
			if seen[name] {
				d.failAt(l.Pos, lp+".name", "listener name %q is already used in this gateway", name)
			}
			seen[name] = true
			listeners[g.Name+"/"+name] = true
			switch l.Protocol {
			case "TLS":
			case "HTTP", "HTTPS", "TCP":
				d.failAt(l.Pos, lp+".protocol", "protocol %s on a gateways: listener is not supported by tailgate yet (only TLS passthrough)", l.Protocol)
			case "":
				d.failAt(l.Pos, lp+".protocol", "tailgate needs protocol: TLS here (HTTP gateways: listeners are not supported yet)")
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
			if !listeners[ref] {
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
