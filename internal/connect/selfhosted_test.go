package connect

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/grants"
	"github.com/tailgate-dev/tailgate/internal/store"
)

func TestSelfHostedControlIsRememberedWithThePlan(t *testing.T) {
	plan := grants.Plan{Env: "staging", Tag: "tag:tailgate-staging"}
	hs := Control{Type: ControlHeadscale, URL: "https://hs.example.com"}
	conn := store.Connection{Detail: detailFor(plan, hs)}
	if got := ControlOf(conn); got != hs {
		t.Fatalf("ControlOf = %+v, want %+v", got, hs)
	}
	// The plan reads back as before: rollback and reconnect unmarshal it.
	var back grants.Plan
	if err := json.Unmarshal(conn.Detail, &back); err != nil || back.Tag != plan.Tag {
		t.Fatalf("plan from detail: %+v, %v", back, err)
	}
	// A Tailscale connection's detail is unchanged from before.
	ts := store.Connection{Detail: detailFor(plan, Control{})}
	if strings.Contains(string(ts.Detail), "control") || ControlOf(ts) != (Control{}) {
		t.Fatalf("tailscale detail: %s", ts.Detail)
	}
	s := &Service{ControlURL: "https://controlplane.tailscale.com"}
	if s.controlURL(conn) != hs.URL || s.controlURL(ts) != s.ControlURL {
		t.Fatal("nodes would join the wrong control server")
	}
}

func TestSelfHostedCredentialsAreCheckedBeforeUse(t *testing.T) {
	hs := Control{Type: ControlHeadscale, URL: "http://127.0.0.1:8080"}
	for name, c := range map[string]struct {
		control Control
		token   string
	}{
		"empty key":           {hs, ""},
		"key with a space":    {hs, "hskey-api-a b"},
		"Tailscale key":       {hs, "tskey-api-abc"},
		"no URL":              {Control{Type: ControlHeadscale}, "hskey-api-abc"},
		"URL with password":   {Control{Type: ControlHeadscale, URL: "https://u:secretpw@hs.example.com"}, "hskey-api-abc"},
		"unknown type":        {Control{Type: "netbird", URL: "https://x"}, "hskey-api-abc"},
		"URL for tailscale":   {Control{URL: "https://x"}, "tskey-api-abc"},
		"headscale key on TS": {Control{}, "hskey-api-abc"},
	} {
		err := checkToken(c.control, c.token)
		var e *Error
		if !errors.As(err, &e) || e.Code != "bad_input" {
			t.Errorf("%s: got %v, want bad_input", name, err)
			continue
		}
		if strings.Contains(e.Error(), "secretpw") || (c.token != "" && strings.Contains(e.Error(), c.token)) {
			t.Errorf("%s: error repeats a secret: %v", name, e)
		}
	}
	if err := checkToken(hs, "hskey-api-abcdef-0123456789"); err != nil {
		t.Errorf("valid headscale key refused: %v", err)
	}
}
