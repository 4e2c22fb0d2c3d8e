package config

import "testing"

// internalBase is agentgateway's traffic-egress-proxy
// config-dynamic-tls.yaml, comments dropped.
const internalBase = `binds:
- port: 3000
  tunnelProtocol: connect
  listeners: []
- port: 443
  mode: internal
  listeners:
  - protocol: HTTPS
    tls:
      mode: dynamicCa
      cert: ca-cert.pem
      key: ca-key.pem
    routes:
    - backends:
      - dynamic: {}
        policies:
          backendTLS: {}
      policies:
        transformations:
          request:
            set:
              x-agentgateway-req-message: "'Hello from AgentGateway!'"
          response:
            set:
              x-agentgateway-resp-message: "'Hello from AgentGateway!'"
`

func TestLoadDynamicTLSExample(t *testing.T) {
	f, err := Parse("ok.yaml", []byte(internalBase))
	if err != nil {
		t.Fatal(err)
	}
	b := f.Binds[1]
	l := b.Listeners[0]
	if b.Mode != "internal" || l.TLS.Mode != "dynamicCa" || l.Routes[0].Backends[0].Dynamic == nil {
		t.Fatalf("bind %+v listener tls %+v", b, l.TLS)
	}
	tr := l.Routes[0].Policies.Transformations
	if tr.Response == nil || len(tr.Response.Set) != 1 || tr.Response.Set[0].Name != "x-agentgateway-resp-message" {
		t.Fatalf("transformations.response = %+v", tr.Response)
	}
}

func TestLoadDynamicTLSErrorsNameThePathAndLine(t *testing.T) {
	cases := []breakage{
		{"  mode: internal", "  mode: hidden", `bad.yaml:5:3: binds[1].mode: expected standard or internal, got "hidden"`},
		{"  mode: internal", "  mode: [internal]", `bad.yaml:6:9: binds[1].mode: expected a string, got a list`},
		{"  mode: internal", "  mode: internal\n  tailnet: true", `binds[1].mode: an internal bind is opened on no network`},
		{"  tunnelProtocol: connect\n", "", `bad.yaml:4:3: binds[1].mode: an internal bind is reached only through a tunnelProtocol: connect bind, and none is configured`},
		{"  mode: internal\n", "", `bad.yaml:14:9: binds[1].listeners[0].routes[0].backends[0].dynamic: a dynamic backend sends each request to the host it names; tailgate allows it only on a mode: internal bind`},
		{"      mode: dynamicCa", "      mode: dynamic", `bad.yaml:10:7: binds[1].listeners[0].tls.mode: expected static or dynamicCa, got "dynamic"`},
		{"      cert: ca-cert.pem\n", "", `bad.yaml:10:7: binds[1].listeners[0].tls: mode: dynamicCa needs cert and key: the CA (PEM files) that signs the certificates it mints`},
		{"      key: ca-key.pem\n", "", `bad.yaml:10:7: binds[1].listeners[0].tls: mode: dynamicCa needs cert and key`},
		{"      mode: dynamicCa", "      mode: dynamicCa\n      root: ca.pem", `binds[1].listeners[0].tls.root: not supported by tailgate yet`},
		{"      mode: dynamicCa", "      mode: dynamicCa\n      spiffe: {}", `bad.yaml:11:15: binds[1].listeners[0].tls.spiffe: spiffe cannot be combined with mode: dynamicCa`},
		{"      - dynamic: {}", "      - dynamic: {target: x}", `binds[1].listeners[0].routes[0].backends[0].dynamic.target: not supported by tailgate yet`},
		{"      - dynamic: {}", "      - dynamic: {}\n        host: a:1", `binds[1].listeners[0].routes[0].backends[0]: set one of host, mcp or dynamic, not several`},
		{"      - dynamic: {}", "      - dynamic: []", `binds[1].listeners[0].routes[0].backends[0].dynamic: expected an object, got a list`},
		{"          response:", "          respons:", `routes[0].policies.transformations.respons: unknown key (did you mean "response"?)`},
		{"              x-agentgateway-resp-message:", "              \"bad header\":", `bad.yaml:25:29: binds[1].listeners[0].routes[0].policies.transformations.response.set.bad header: not a header name`},
		{"              x-agentgateway-resp-message:", "              \":method\":", `transformations.response.set.:method: not a header name`},
	}
	checkBreakages(t, internalBase, cases)
}
