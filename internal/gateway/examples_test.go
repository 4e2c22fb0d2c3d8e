package gateway

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestAgentgatewayExamplesLoad loads every in-scope config of
// agentgateway's examples/ directory (testdata/agentgateway, from the
// repository root as agentgateway resolves relative paths). A config
// tailgate cannot run yet must be refused naming the feature, never
// loaded with the feature silently ignored.
func TestAgentgatewayExamplesLoad(t *testing.T) {
	dir, err := filepath.Abs("testdata/agentgateway")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	// The cross-app-access examples take their secrets and hosts from
	// the environment, as their READMEs say.
	for name, v := range map[string]string{
		"KC_AGENT_SECRET": "agent-secret", "KC_RESOURCE_SECRET": "resource-secret",
		"OKTA_DOMAIN": "example.okta.com", "OKTA_CLIENT_ID": "okta-client", "OKTA_CLIENT_SECRET": "okta-secret",
		"AUTH0_DOMAIN": "example.auth0.com", "AUTH0_CLIENT_ID": "auth0-client", "AUTH0_CLIENT_SECRET": "auth0-secret",
		"SCOPE": "todos.read", "AUTH0_API": "https://api.example.com", "RESOURCE_API_HOST": "api.example.com",
		"XAA_CLIENT_ID": "xaa-client", "XAA_IDP_SECRET": "xaa-idp-secret", "XAA_RESOURCE_SECRET": "xaa-resource-secret",
	} {
		t.Setenv(name, v)
	}
	// "" loads; otherwise the error must name why it does not.
	examples := map[string]string{
		"fault-injection/config.yaml":                        "",
		"mcp-apps/config-multiplex.yaml":                     "",
		"mcp-apps/config.yaml":                               "",
		"mcp-authentication/config.yaml":                     "",
		"mcp-authorization/config.yaml":                      "",
		"mcp-basic/config.yaml":                              "",
		"mcp-multiplex/config.yaml":                          "",
		"mcp-tls/config.yaml":                                "",
		"traffic-http/config.yaml":                           "",
		"traffic-jwt-sign/config.yaml":                       "",
		"traffic-tailscale-auth/config.yaml":                 "",
		"mcp-openapi/config.yaml":                            "",
		"mcp-telemetry/config.yaml":                          "",
		"mcp-telemetry/logging/otel.yaml":                    "",
		"traffic-ratelimiting-local/config.yaml":             "",
		"traffic-ratelimiting-global/config.yaml":            "",
		"traffic-a2a/config.yaml":                            "",
		"traffic-oidc/config.yaml":                           "",
		"traffic-oauth2-proxy/config.yaml":                   "",
		"traffic-cross-app-access/keycloak/gateway.yaml":     "",
		"traffic-cross-app-access/okta-auth0/gateway.yaml":   "",
		"traffic-cross-app-access/xaa-dev/gateway.yaml":      "",
		"traffic-token-exchange/extauthz/config.yaml":        "",
		"traffic-token-exchange/jwt-authz-grant/config.yaml": "",
		"traffic-token-exchange/oauth-rfc8693/config.yaml":   "",
		"traffic-egress-proxy/config.yaml":                   "",
		"traffic-spiffe/config.yaml":                         "",
		// Out of scope: LLM backends.
		"traffic-egress-proxy/config-conditional.yaml": "llm: not supported by tailgate yet",
		"traffic-egress-proxy/config-dynamic-tls.yaml": "",
		"traffic-unified-gateway/config.yaml":          "llm: not supported by tailgate yet",
	}
	files, _ := filepath.Glob("examples/*/*.yaml")
	more, _ := filepath.Glob("examples/*/*/*.yaml")
	files = append(files, more...)
	loaded := 0
	for _, f := range files {
		name := strings.TrimPrefix(f, "examples/")
		want, known := examples[name]
		if !known {
			t.Errorf("%s: not in the table", name)
			continue
		}
		err := Validate(f)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", name, err)
		case want == "":
			loaded++
		case err == nil:
			t.Errorf("%s loaded; want a refusal naming %q", name, want)
		case !strings.Contains(err.Error(), want):
			t.Errorf("%s: error does not name %q:\n%v", name, want, err)
		}
	}
	if len(files) != len(examples) {
		t.Errorf("%d example files, %d in the table", len(files), len(examples))
	}
	t.Logf("%d of %d agentgateway examples load", loaded, len(files))
}
