package allowlist

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// receiver is a local webhook receiver that fails its first fails
// deliveries with a 500 (and a body that must never be repeated).
type receiver struct {
	mu        sync.Mutex
	fails     int
	attempts  int
	delivered []ChangePage
	sigs      []string
	bodies    [][]byte
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	if rc.attempts <= rc.fails {
		http.Error(w, "receiver-secret-detail: database down", http.StatusInternalServerError)
		return
	}
	var p ChangePage
	if err := json.Unmarshal(body, &p); err != nil || r.Header.Get(EventHeader) != EventEgressChanges || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "bad delivery", http.StatusBadRequest)
		return
	}
	rc.delivered = append(rc.delivered, p)
	rc.sigs = append(rc.sigs, r.Header.Get(SignatureHeader))
	rc.bodies = append(rc.bodies, body)
}

func TestWebhookDeliveryRetriesWithBackoffThenSucceedsSigned(t *testing.T) {
	ctx := context.Background()
	s, c, org := newService(t)
	s.Outbound = outbound.AllowLoopback()
	s.RetryMin, s.RetryMax = time.Second, 4*time.Second
	rc := &receiver{fails: 3}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s.Configure(ctx, addrs("203.0.113.1")) // before the webhook: not delivered
	created, err := s.SetWebhook(ctx, org, srv.URL+"/hook?team=net")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.Secret, SecretPrefix) || created.Cursor != "1" {
		t.Fatalf("created = %+v", created)
	}
	s.Configure(ctx, addrs("203.0.113.1", "198.51.100.5"))

	wantWaits := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}
	for i, wait := range wantWaits {
		s.Deliver(ctx)
		wh, _ := s.GetWebhook(ctx, org)
		if wh.FailedAttempts != i+1 || wh.NextAttemptAt == nil || !wh.NextAttemptAt.Equal(c.Now().Add(wait)) {
			t.Fatalf("after failure %d: %+v, want next attempt in %s", i+1, wh, wait)
		}
		if wh.LastError != "the receiver answered 500" {
			t.Errorf("last error = %q: it must be tailgate's words, never the receiver's body", wh.LastError)
		}
		// Not due yet: nothing is sent.
		s.Deliver(ctx)
		if rc.attempts != i+1 {
			t.Fatalf("delivered before the backoff passed: %d attempts", rc.attempts)
		}
		c.Advance(wait)
	}
	s.Deliver(ctx)
	wh, _ := s.GetWebhook(ctx, org)
	if len(rc.delivered) != 1 || wh.FailedAttempts != 0 || wh.LastError != "" || wh.LastSuccessAt == nil || wh.Cursor != "2" {
		t.Fatalf("after success: receiver has %d, webhook %+v", len(rc.delivered), wh)
	}
	got := rc.delivered[0]
	if len(got.Changes) != 1 || got.Changes[0].IP != "198.51.100.5" || got.Changes[0].Change != store.EgressAdd ||
		!got.Changes[0].EffectiveAt.Equal(got.Changes[0].AnnouncedAt.Add(24*time.Hour)) || got.Cursor != "2" {
		t.Errorf("delivered page = %+v", got)
	}
	if err := VerifySignature(created.Secret, rc.sigs[0], rc.bodies[0], c.Now(), 5*time.Minute); err != nil {
		t.Errorf("signature does not verify: %v", err)
	}
	if err := VerifySignature("tgwhsec_wrong", rc.sigs[0], rc.bodies[0], c.Now(), 5*time.Minute); err == nil {
		t.Error("signature verifies under another secret")
	}
	tampered := append([]byte{}, rc.bodies[0]...)
	tampered[len(tampered)-2] ^= 1
	if err := VerifySignature(created.Secret, rc.sigs[0], tampered, c.Now(), 5*time.Minute); err == nil {
		t.Error("signature verifies a changed body")
	}
	if err := VerifySignature(created.Secret, rc.sigs[0], rc.bodies[0], c.Now().Add(time.Hour), 5*time.Minute); err == nil {
		t.Error("an hour-old signature verifies within a 5-minute tolerance")
	}
	// Up to date: nothing more is sent.
	s.Deliver(ctx)
	if rc.attempts != 4 {
		t.Errorf("attempts = %d after catching up", rc.attempts)
	}
	// A new secret replaces the old, and the view never shows it.
	raw, _ := json.Marshal(wh)
	if strings.Contains(string(raw), created.Secret) || strings.Contains(string(raw), "secret") {
		t.Errorf("webhook view shows its secret: %s", raw)
	}
}

func TestWebhookToARefusedAddressIsRefusedUnlessAllowed(t *testing.T) {
	ctx := context.Background()
	s, c, org := newService(t)
	rc := &receiver{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	// Setting it: refused by the default policy (loopback).
	if _, err := s.SetWebhook(ctx, org, srv.URL); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("loopback webhook under the default policy: %v", err)
	}
	// Set while loopback was allowed, then the operator stops allowing it:
	// deliveries are refused at dial time, and the receiver sees nothing.
	s.Outbound = outbound.AllowLoopback()
	if _, err := s.SetWebhook(ctx, org, srv.URL); err != nil {
		t.Fatal(err)
	}
	s.Outbound = &outbound.Policy{}
	s.Configure(ctx, addrs("203.0.113.1"))
	s.Deliver(ctx)
	wh, _ := s.GetWebhook(ctx, org)
	if rc.attempts != 0 || wh.FailedAttempts != 1 || !strings.Contains(wh.LastError, "refused by the outbound policy") || !strings.Contains(wh.LastError, "loopback") {
		t.Fatalf("refused delivery: receiver attempts %d, webhook %+v", rc.attempts, wh)
	}
	// Allowed again: the retry goes through.
	s.Outbound = outbound.AllowLoopback()
	c.Advance(time.Hour)
	s.Deliver(ctx)
	if len(rc.delivered) != 1 {
		t.Errorf("after allowing loopback: %d deliveries", len(rc.delivered))
	}
}

func TestWebhookRedirectIsNotFollowed(t *testing.T) {
	ctx := context.Background()
	s, _, org := newService(t)
	s.Outbound = outbound.AllowLoopback()
	rc := &receiver{}
	target := httptest.NewServer(rc)
	defer target.Close()
	redir := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusTemporaryRedirect))
	defer redir.Close()
	if _, err := s.SetWebhook(ctx, org, redir.URL); err != nil {
		t.Fatal(err)
	}
	s.Configure(ctx, addrs("203.0.113.1"))
	s.Deliver(ctx)
	wh, _ := s.GetWebhook(ctx, org)
	if rc.attempts != 0 || !strings.Contains(wh.LastError, "redirect") {
		t.Errorf("redirect: target saw %d attempts, webhook %+v", rc.attempts, wh)
	}
}

func TestWebhookURLIsCheckedStrictly(t *testing.T) {
	ctx := context.Background()
	s, _, org := newService(t)
	s.Outbound = outbound.AllowLoopback()
	for url, why := range map[string]string{
		"":                              "required",
		"hooks.example.com/x":           "absolute",
		"ftp://127.0.0.1/x":             "http or https",
		"https://user:pw@127.0.0.1/x":   "credentials",
		"https://127.0.0.1/x#frag":      "fragment",
		"https:///x":                    "no host",
		"http://169.254.169.254/latest": "link-local",
		"https://" + strings.Repeat("a", MaxWebhookURL) + ".com/": "at most",
		"mailto:ops@example.com":                                  "absolute",
	} {
		_, err := s.SetWebhook(ctx, org, url)
		var be *BadInputError
		if !errors.As(err, &be) || !strings.Contains(be.Msg, why) {
			t.Errorf("SetWebhook(%.40q) = %v, want a bad-input error saying %q", url, err, why)
		}
	}
}

func TestDeliveryLoopDeliversSoonAfterAChange(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, _, org := newService(t)
	s.Now = nil // real time
	s.Outbound = outbound.AllowLoopback()
	s.RetryMin = 10 * time.Millisecond
	rc := &receiver{fails: 1}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	if _, err := s.SetWebhook(ctx, org, srv.URL); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.RunDeliveries(ctx, 20*time.Millisecond); close(done) }()
	s.Configure(ctx, addrs("203.0.113.1"))
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		n := len(rc.delivered)
		rc.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loop did not deliver (after one failure) within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
