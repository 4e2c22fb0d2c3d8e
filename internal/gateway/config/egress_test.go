package config

import (
	"strings"
	"testing"
)

// egressBase is a valid egress config; each bad case below breaks one
// thing in it.
const egressBase = `binds:
- port: 3000
  tunnelProtocol: connect
  listeners: []
gateways:
  secure:
    port: 443
    listeners:
    - name: public-egress
      hostname: "*"
      protocol: TLS
tcpRoutes:
- name: allow
  gateways: secure/public-egress
  hostnames: [pypi.org, "*.github.com"]
  backends:
  - dynamic: {}
`

func TestLoadEgressConfig(t *testing.T) {
	f, err := Parse("ok.yaml", []byte(egressBase))
	if err != nil {
		t.Fatal(err)
	}
	if f.Binds[0].TunnelProtocol != "connect" || len(f.Gateways) != 1 || f.Gateways[0].Name != "secure" || f.Gateways[0].Port != 443 {
		t.Fatalf("decoded %+v %+v", f.Binds[0], f.Gateways)
	}
	r := f.TCPRoutes[0]
	if len(r.Gateways.Refs) != 1 || r.Gateways.Refs[0] != "secure/public-egress" || r.Backends[0].Dynamic == nil {
		t.Fatalf("decoded route %+v", r)
	}
}

func TestLoadEgressErrorsNameThePathAndLine(t *testing.T) {
	cases := []breakage{
		{"tunnelProtocol: connect", "tunnelProtocol: [connect]", `bad.yaml:3:19: binds[0].tunnelProtocol: expected a string, got a list`},
		{"tunnelProtocol: connect", "tunnelProtocol: socks", `bad.yaml:2:3: binds[0].tunnelProtocol: expected direct or connect, got "socks"`},
		{"tunnelProtocol: connect", "tunnelProtocol: hboneWaypoint", `binds[0].tunnelProtocol: hboneWaypoint is not supported by tailgate yet`},
		{"port: 443", "port: https", `bad.yaml:7:11: gateways.secure.port: expected an integer, got "https"`},
		{"port: 443", "port: 3000", `gateways.secure.port: port 3000 is already used by binds[0]`},
		{"      protocol: TLS", "      protocol: HTTPS", `bad.yaml:9:7: gateways.secure.listeners[0].tls: protocol HTTPS needs tls: {cert, key}`},
		{"      protocol: TLS", "      protocl: TLS", `bad.yaml:11:7: gateways.secure.listeners[0].protocl: unknown key (did you mean "protocol"?)`},
		{"      protocol: TLS", "      protocol: TLS\n      jwtAuth: {}", `bad.yaml:12:7: gateways.secure.listeners[0].jwtAuth: HTTP policies on a TLS passthrough listener are not supported by tailgate yet`},
		{"      protocol: TLS", "      protocol: TLS\n    - {name: web, protocol: HTTP}", `bad.yaml:12:7: gateways.secure.listeners[1].protocol: this gateway has TLS passthrough listeners; mixing them with HTTP or HTTPS listeners on one port is not supported by tailgate yet`},
		{"  hostnames:", "  hostname:", `bad.yaml:15:3: tcpRoutes[0].hostname: unknown key (did you mean "hostnames"?)`},
		{"secure/public-egress", "secure/egress", `bad.yaml:14:13: tcpRoutes[0].gateways: no gateway or gateway listener "secure/egress" in gateways:`},
		{"secure/public-egress", "[secure/public-egress, other]", `bad.yaml:14:13: tcpRoutes[0].gateways[1]: no gateway or gateway listener "other" in gateways:`},
		{"pypi.org,", "pypi.org:443,", `tcpRoutes[0].hostnames[0]: expected a hostname like api.example.com or *.example.com, got "pypi.org:443"`},
		{"- dynamic: {}", "- host: pypi.org:443", `bad.yaml:17:5: tcpRoutes[0].backends[0].host: not supported by tailgate yet`},
		{"- dynamic: {}", "- dynamic: {target: x}", `tcpRoutes[0].backends[0].dynamic.target: not supported by tailgate yet`},
		{"  backends:\n  - dynamic: {}\n", "", `tcpRoutes[0].backends: tailgate needs exactly one backend (dynamic: {}), got 0`},
		{"  gateways: secure/public-egress\n", "", `tcpRoutes[0].gateways: a tcpRoute must name its gateways`},
		{"  tunnelProtocol: connect\n", "", `gateways.secure: tailgate serves gateways only through a tunnelProtocol: connect bind`},
		{"  listeners: []", "  listeners: [{protocol: HTTP}]", `binds[0].listeners: a tunnelProtocol: connect bind takes no listeners`},
	}
	checkBreakages(t, egressBase, cases)
}

// breakage changes the first old in a valid config to new; loading it
// must fail with an error containing want.
type breakage struct{ old, new, want string }

func checkBreakages(t *testing.T, base string, cases []breakage) {
	t.Helper()
	for _, c := range cases {
		cfg := strings.Replace(base, c.old, c.new, 1)
		if cfg == base {
			t.Fatalf("case %q does not change the config", c.old)
		}
		_, err := Parse("bad.yaml", []byte(cfg))
		if err == nil {
			t.Errorf("%s -> %s: loaded; want %s", c.old, c.new, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s -> %s:\ngot  %v\nwant %s", c.old, c.new, err, c.want)
		}
	}
}
