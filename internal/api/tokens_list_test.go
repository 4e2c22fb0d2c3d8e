package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

func TestTokensAreListedWithoutSecretsAndRevokedAtOnce(t *testing.T) {
	h := newHarness(t)
	created := h.createToken("nightly", "runner")

	a := h.do("GET", "/v1/tokens", h.adminA, nil)
	h.mustStatus(a, 200, "list")
	var list TokenList
	json.Unmarshal(a.body, &list)
	var found, current bool
	for _, tk := range list.Tokens {
		found = found || tk.ID == created.ID && tk.Role == "runner" && tk.RevokedAt == nil
		current = current || tk.Current && tk.Name == "admin"
	}
	if !found || !current {
		t.Errorf("list lacks the new token or the caller's own: %s", a.body)
	}
	if created.Token == "" || bytes.Contains(a.body, []byte(created.Token)) {
		t.Errorf("the list shows a token itself")
	}
	h.mustStatus(h.do("GET", "/v1/tokens", h.runnerA, nil), 403, "runner lists")
	h.mustStatus(h.do("DELETE", "/v1/tokens/"+created.ID, h.runnerA, nil), 403, "runner revokes")
	h.mustStatus(h.do("DELETE", "/v1/tokens/"+created.ID, h.adminB, nil), 404, "other org revokes")
	h.mustStatus(h.do("DELETE", "/v1/tokens/nonsense", h.adminA, nil), 404, "bad id")

	h.mustStatus(h.do("GET", "/v1/environments", created.Token, nil), 200, "new token works")
	h.mustStatus(h.do("DELETE", "/v1/tokens/"+created.ID, h.adminA, nil), 204, "revoke")
	h.mustStatus(h.do("DELETE", "/v1/tokens/"+created.ID, h.adminA, nil), 204, "revoke again")
	h.mustStatus(h.do("GET", "/v1/environments", created.Token, nil), 401, "revoked token")
}

func TestRunsListIsPerOrgAndNarrowsToOneEnvironment(t *testing.T) {
	h := newHarness(t)
	h.mustStatus(h.do("POST", "/v1/environments", h.adminA, map[string]string{"name": "staging"}), 201, "create")
	a := h.do("GET", "/v1/runs", h.runnerA, nil)
	h.mustStatus(a, 200, "list")
	var runs RunList
	if json.Unmarshal(a.body, &runs) != nil || runs.Runs == nil || len(runs.Runs) != 0 {
		t.Errorf("empty list: %s", a.body)
	}
	h.mustStatus(h.do("GET", "/v1/runs?environment=staging", h.runnerA, nil), 200, "one env")
	h.mustStatus(h.do("GET", "/v1/runs?environment=staging", h.adminB, nil), 404, "other org's env")
	h.mustStatus(h.do("GET", "/v1/runs?environment=Bad!", h.adminA, nil), 400, "bad name")
	h.mustStatus(h.do("GET", "/v1/runs", "", nil), 401, "no token")
}
