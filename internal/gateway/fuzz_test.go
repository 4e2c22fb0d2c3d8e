package gateway

import (
	"testing"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// FuzzLoadAndCompile feeds arbitrary files through the whole load path
// (YAML → config → CEL, regexes, policies): errors are fine, panics not.
func FuzzLoadAndCompile(f *testing.F) {
	f.Add([]byte(simpleConfig(3000, "127.0.0.1:1", `
authorization: {rules: ['request.path.matches("^/a")', {deny: 'jwt.sub == "x"'}]}
localRateLimit: [{maxTokens: 1, fillInterval: 1s}]
cors: {allowOrigins: ["*"], maxAge: 1m}
extAuthz: {host: "127.0.0.1:1", protocol: {http: {path: '"/x"', metadata: {a: 'response.code'}}}}`, `
networkAuthorization: {rules: ['cidr("100.64.0.0/10").containsIP(source.address)']}`)))
	f.Add([]byte("binds:\n- port: 1\n  listeners:\n  - routes:\n    - matches: [{path: {regex: '('}}]\n      backends: [{host: 'a:1', weight: 0}]"))
	f.Add([]byte("binds:\n- port: 1\n  listeners:\n  - protocol: HTTPS\n    tls: {cert: /nonexistent, key: /nonexistent}"))
	deps := defaultDeps()
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := config.Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		_, _ = compile("fuzz.yaml", data, cfg, deps)
	})
}
