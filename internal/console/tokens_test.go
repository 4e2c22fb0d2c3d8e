package console

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestRevokeTokenInTheConsole: an admin creates a runner token, sees it
// once, revokes it with its button, and is told so; the token then no
// longer authenticates to the API.
func TestRevokeTokenInTheConsole(t *testing.T) {
	s := newStack(t, false)
	c := s.client(t)
	tok := c.signIn(s.admin)
	p := c.post("/console/tokens", url.Values{"csrf": {tok}, "name": {"to-revoke"}})
	m := regexp.MustCompile(`id="new-token" type="text" readonly value="([^"]+)"`).FindStringSubmatch(p.body)
	if p.url != "/console/tokens" || m == nil {
		t.Fatalf("create token: %d at %s, no token shown: %.1000s", p.status, p.url, p.body)
	}
	secret := m[1]
	apiGet := func() int {
		req, _ := http.NewRequest("GET", c.base+"/v1/runs", nil)
		req.Header.Set("Authorization", "Bearer "+secret)
		return c.do(req).status
	}
	if st := apiGet(); st != http.StatusOK {
		t.Fatalf("the new token before revoking: %d", st)
	}
	form := regexp.MustCompile(`action="(/console/tokens/[^"/]+/revoke)">\s*<input[^>]*>\s*<button[^>]*aria-label="Revoke token to-revoke"`).FindStringSubmatch(p.body)
	if form == nil {
		t.Fatalf("no revoke button for to-revoke: %.2000s", p.body)
	}
	p = c.post(form[1], url.Values{"csrf": {tok}})
	if p.status != http.StatusOK || p.url != "/console/tokens" || !strings.Contains(p.body, "Token revoked: it no longer authenticates.") {
		t.Errorf("revoke: %d at %s: %.1000s", p.status, p.url, p.body)
	}
	if st := apiGet(); st != http.StatusUnauthorized {
		t.Errorf("the revoked token still authenticates: %d", st)
	}
}
