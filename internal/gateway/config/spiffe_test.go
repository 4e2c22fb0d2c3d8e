package config

import "testing"

// spiffeBase is agentgateway's traffic-spiffe example.
const spiffeBase = `config:
  spiffe:
    endpoint: unix:///tmp/spire-agent/public/api.sock
binds:
- port: 3000
  listeners:
  - name: default
    protocol: HTTPS
    tls:
      spiffe: {}
    routes:
    - policies:
        directResponse:
          status: 200
          bodyExpression: '"Your SPIFFE ID is: " + source.spiffeId'
- port: 3001
  listeners:
  - name: upstream-mtls
    protocol: HTTP
    routes:
    - policies:
        backendTLS:
          spiffe: {}
          subjectAltNames:
          - spiffe://example.org/ns/default/sa/upstream
      backends:
      - host: upstream.default.svc.cluster.local:8443
`

func TestLoadSpiffeConfig(t *testing.T) {
	f, err := Parse("ok.yaml", []byte(spiffeBase))
	if err != nil {
		t.Fatal(err)
	}
	if f.Config.Spiffe.Endpoint != "unix:///tmp/spire-agent/public/api.sock" || f.Binds[0].Listeners[0].TLS.Spiffe == nil ||
		f.Binds[1].Listeners[0].Routes[0].Policies.BackendTLS.Spiffe == nil {
		t.Fatalf("decoded %+v", f)
	}
}

func TestLoadSpiffeErrorsNameThePathAndLine(t *testing.T) {
	checkBreakages(t, spiffeBase, []breakage{
		{"endpoint: unix:///tmp/spire-agent/public/api.sock", "endpoint: [unix:///tmp/a.sock]", `bad.yaml:3:15: config.spiffe.endpoint: expected a string, got a list`},
		{"endpoint: unix:///tmp/spire-agent/public/api.sock", "endpoint: tcp://127.0.0.1:8081", `bad.yaml:3:5: config.spiffe.endpoint: expected unix:///path/to/socket, got "tcp://127.0.0.1:8081"`},
		{"endpoint: unix:///tmp/spire-agent/public/api.sock", "endpoint: unix://tmp/api.sock", `bad.yaml:3:5: config.spiffe.endpoint: expected unix:///path/to/socket, got "unix://tmp/api.sock"`},
		{"endpoint: unix:///tmp/spire-agent/public/api.sock", "endpoit: unix:///tmp/a.sock", `bad.yaml:3:5: config.spiffe.endpoit: unknown key (did you mean "endpoint"?)`},
		{"config:\n  spiffe:\n    endpoint: unix:///tmp/spire-agent/public/api.sock\n", "", `bad.yaml:7:15: binds[0].listeners[0].tls.spiffe: spiffe needs config.spiffe.endpoint (the SPIFFE Workload API socket)
bad.yaml:20:19: binds[1].listeners[0].routes[0].policies.backendTLS.spiffe: spiffe needs config.spiffe.endpoint`},
		{"      spiffe: {}", "      spiffe: true", `bad.yaml:10:15: binds[0].listeners[0].tls.spiffe: expected an object, got "true"`},
		{"      spiffe: {}", "      spiffe: {trustDomain: example.org}", `bad.yaml:10:16: binds[0].listeners[0].tls.spiffe.trustDomain: unknown key (this object takes no keys; write {})`},
		{"      spiffe: {}", "      spiffe: {}\n      cert: cert.pem\n      key: key.pem", `bad.yaml:10:15: binds[0].listeners[0].tls.spiffe: spiffe cannot be combined with cert/key`},
		{"      spiffe: {}", "      cert: cert.pem", `bad.yaml:10:7: binds[0].listeners[0].tls: set cert and key (PEM files), or spiffe: {}`},
		{"          spiffe: {}", "          spiffe: {}\n          insecure: true", `bad.yaml:23:19: binds[1].listeners[0].routes[0].policies.backendTLS.spiffe: spiffe cannot be combined with insecure`},
		{"          - spiffe://example.org/ns/default/sa/upstream", "          - upstream.example.org", `binds[1].listeners[0].routes[0].policies.backendTLS.subjectAltNames[0]: with spiffe, subjectAltNames are SPIFFE IDs (spiffe://trust-domain/path), got "upstream.example.org"`},
		{"          - spiffe://example.org/ns/default/sa/upstream", "          - spiffe://example.org/a//b", `binds[1].listeners[0].routes[0].policies.backendTLS.subjectAltNames[0]: with spiffe, subjectAltNames are SPIFFE IDs (spiffe://trust-domain/path), got "spiffe://example.org/a//b": path cannot contain empty segments`},
	})
}
