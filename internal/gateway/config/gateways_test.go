package config

import (
	"strings"
	"testing"
)

// gatewayFormBase is a valid config in the top-level form; each bad case
// below breaks one thing in it.
const gatewayFormBase = `gateways:
  default:
    port: 3000
  web:
    port: 8080
    listeners:
    - name: api
      hostname: api.example.com
      authorization: {rules: ['true']}
backends:
- name: echo
  host: localhost:9000
routes:
- name: a
  backends:
  - backend: echo
- name: b
  gateways: web/api
  backends:
  - backend: echo
`

func TestLoadGatewayForm(t *testing.T) {
	f, err := Parse("ok.yaml", []byte(gatewayFormBase))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Binds) != 2 || len(f.Gateways) != 0 {
		t.Fatalf("want 2 binds and no passthrough gateways, got %d, %d", len(f.Binds), len(f.Gateways))
	}
	def, web := f.Binds[0], f.Binds[1]
	if def.Port != 3000 || def.Listeners[0].Name != "default" || def.Listeners[0].Protocol != "HTTP" || len(def.Listeners[0].Routes) != 1 {
		t.Errorf("default gateway became %+v", def)
	}
	l := web.Listeners[0]
	if web.Port != 8080 || l.Name != "web/api" || l.Hostname != "api.example.com" || l.Policies == nil || l.Policies.Authorization == nil {
		t.Errorf("web gateway became %+v", web)
	}
	if len(l.Routes) != 1 || l.Routes[0].Name != "b" || l.Routes[0].Backends[0].Host != "localhost:9000" {
		t.Errorf("route b became %+v", l.Routes)
	}
}

func TestLoadGatewayFormErrorsNameThePathAndLine(t *testing.T) {
	cases := []breakage{
		{"gateways: web/api", "gateways: web/apx", `bad.yaml:18:13: routes[1].gateways: no HTTP gateway or gateway listener "web/apx" in gateways:`},
		{"gateways: web/api", "gateways: [web, nope]", `routes[1].gateways[1]: no HTTP gateway or gateway listener "nope" in gateways:`},
		{"  default:\n    port: 3000\n", "", `bad.yaml:12:3: routes[0].gateways: a route must name its gateways`},
		{"  - backend: echo\n- name: b", "  - backend: ech\n- name: b", `bad.yaml:16:5: routes[0].backends[0].backend: no backend named "ech" in the top-level backends:`},
		{"  host: localhost:9000", "  host: localhost:9000\n- name: echo\n  host: x:1", `backends[1].name: backend name "echo" is already used by backends[0]`},
		{"  host: localhost:9000", "  hots: localhost:9000", `bad.yaml:12:3: backends[0].hots: unknown key`},
		{"  host: localhost:9000", "  host: localhost:9000\n  weight: 2", `backends[0].weight: weight belongs on a route's backend: reference`},
		{"  - backend: echo\n- name: b", "  - backend: echo\n    host: x:1\n- name: b", `routes[0].backends[0]: set one of backend, host, mcp or dynamic, not several`},
		{"    port: 8080", "    port: web", `bad.yaml:5:11: gateways.web.port: expected an integer, got "web"`},
		{"    port: 8080", "    port: 3000", `bad.yaml:5:5: gateways.web.port: port 3000 is already used by gateways.default`},
		{"      hostname: api.example.com", "      hostnam: api.example.com", `bad.yaml:8:7: gateways.web.listeners[0].hostnam: unknown key (did you mean "hostname"?)`},
		{"      hostname: api.example.com", "      hostname: api.example.com:80", `gateways.web.listeners[0].hostname: expected a hostname`},
		{"      hostname: api.example.com", "      hostname: a\n    - name: api", `gateways.web.listeners[1].name: listener name "api" is already used in this gateway`},
		{"    listeners:", "    protocol: HTTP\n    listeners:", `bad.yaml:5:5: gateways.web: a gateway with listeners cannot set protocol, tls or policies itself`},
		{"      hostname: api.example.com", "      hostname: api.example.com\n      protocol: HTTPS", `gateways.web.listeners[0].tls: protocol HTTPS needs tls: {cert, key}`},
		{"    port: 3000", "    port: 3000\n    protocol: SCTP", `gateways.default.protocol: expected HTTP, HTTPS, TCP or TLS, got "SCTP"`},
		{"authorization: {rules: ['true']}", "authorization: {rulez: ['true']}", `bad.yaml:9:23: gateways.web.listeners[0].authorization.rulez: unknown key`},
		{"- name: b\n", "- name: b\n  matches: [{method: get}]\n", `bad.yaml:18:13: routes[1].matches[0].method: methods are upper case, got "get"`},
	}
	checkBreakages(t, gatewayFormBase, cases)
}

// A tcpRoute naming an HTTP gateway says what kind it is.
func TestLoadTCPRouteOnHTTPGateway(t *testing.T) {
	cfg := strings.Replace(egressBase, "gateways:\n", "gateways:\n  web: {port: 8080}\n", 1)
	cfg = strings.Replace(cfg, "gateways: secure/public-egress", "gateways: [secure/public-egress, web]", 1)
	_, err := Parse("bad.yaml", []byte(cfg))
	if err == nil || !strings.Contains(err.Error(), `tcpRoutes[0].gateways: "web" is an HTTP gateway listener`) {
		t.Fatalf("got %v", err)
	}
}

func TestLoadMCPOnGatewayErrors(t *testing.T) {
	const base = `gateways:
  web: {port: 8080}
mcp:
  gateways: web
  targets:
  - name: t
    mcp: {host: "http://127.0.0.1:1/mcp"}
`
	if f, err := Parse("ok.yaml", []byte(base)); err != nil || len(f.Binds) != 1 || len(f.Binds[0].Listeners[0].Routes) != 1 {
		t.Fatalf("the mcp: block is not one route on gateway web: %v", err)
	}
	checkBreakages(t, base, []breakage{
		{"gateways: web", "gateways: nope", `bad.yaml:4:13: mcp.gateways: no HTTP gateway or gateway listener "nope" in gateways:`},
		{"  gateways: web\n", "  gateways: web\n  port: 3001\n", `mcp.gateways: mcp.gateways cannot be used with mcp.port`},
		{"    mcp: {host", "    mpc: {host", `bad.yaml:7:5: mcp.targets[0].mpc: unknown key`},
	})
}
