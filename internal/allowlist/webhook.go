package allowlist

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/periodic"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Webhook delivery headers.
const (
	// SignatureHeader carries "t=<unix seconds>,v1=<hex HMAC-SHA256>" of
	// "<t>.<body>" under the webhook's secret (see Sign).
	SignatureHeader = "Tailgate-Signature"
	// WebhookIDHeader names the webhook the delivery is for.
	WebhookIDHeader = "Tailgate-Webhook-Id"
	// EventHeader says what the body is: EventEgressChanges.
	EventHeader = "Tailgate-Event"
	// EventEgressChanges: the body is a ChangePage of the allowlist feed.
	EventEgressChanges = "allowlist.changes"
)

// SecretPrefix starts every webhook signing secret (package redact knows
// it, so one pasted in a log is removed).
const SecretPrefix = "tgwhsec_"

// sealPurpose binds a sealed secret to its use (vault's additional data).
const sealPurpose = "allowlist-webhook-secret"

// Webhook is an org's allowlist webhook as the API shows it: never its
// secret.
type Webhook struct {
	ID        string    `json:"id"`
	URL       string    `json:"url"`
	CreatedAt time.Time `json:"created_at"`
	// Cursor is the newest change the receiver acknowledged (for a new
	// webhook, the feed's newest change when it was set).
	Cursor string `json:"cursor"`
	// FailedAttempts counts failed deliveries since the last success.
	FailedAttempts int        `json:"failed_attempts"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	LastSuccessAt  *time.Time `json:"last_success_at,omitempty"`
	// LastError says why the last delivery failed, in tailgate's words;
	// never what the receiver answered.
	LastError string `json:"last_error,omitempty"`
}

// CreatedWebhook is the answer to setting a webhook: the only time its
// signing secret is shown.
type CreatedWebhook struct {
	Webhook
	Secret string `json:"secret"`
}

// SetWebhook gives orgID a webhook at rawURL with a new signing secret,
// replacing any it had. Deliveries start with the next change; the
// answer's Cursor is where the feed stands. rawURL must be http(s)
// without credentials or fragment, and reach an address the outbound
// policy allows (checked now and again at every delivery).
func (s *Service) SetWebhook(ctx context.Context, orgID, rawURL string) (CreatedWebhook, error) {
	if s.Vault == nil {
		return CreatedWebhook{}, errors.New("allowlist: no vault to seal webhook secrets")
	}
	if err := s.checkWebhookURL(ctx, rawURL); err != nil {
		return CreatedWebhook{}, err
	}
	secret := SecretPrefix + b32.EncodeToString(random(32))
	sealed, err := s.Vault.Seal([]byte(secret), orgID, sealPurpose)
	if err != nil {
		return CreatedWebhook{}, err
	}
	w, err := s.Store.PutEgressWebhook(ctx, orgID, rawURL, sealed)
	if err != nil {
		return CreatedWebhook{}, err
	}
	return CreatedWebhook{Webhook: webhookView(w), Secret: secret}, nil
}

// MaxWebhookURL is the longest webhook URL accepted.
const MaxWebhookURL = 2048

func (s *Service) checkWebhookURL(ctx context.Context, raw string) error {
	if raw == "" || len(raw) > MaxWebhookURL {
		return badInput("url is required: an http(s) URL of at most %d bytes", MaxWebhookURL)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Opaque != "" {
		return badInput("url must be an absolute http(s) URL, e.g. https://hooks.example.com/tailgate")
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return badInput("url must be http or https, not %q", u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return badInput("url has no host")
	}
	if u.User != nil {
		return badInput("url must not carry credentials (user:password@); deliveries are signed instead")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return badInput("url must not have a #fragment")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return badInput("url must not contain spaces or line breaks")
	}
	if err := s.policy().CheckURL(ctx, raw); err != nil {
		var re *outbound.RefusedError
		if errors.As(err, &re) {
			return badInput("url is refused: %v (serve --outbound-allow decides which non-public addresses webhooks may reach)", err)
		}
		return badInput("url: %v", err)
	}
	return nil
}

func (s *Service) policy() *outbound.Policy {
	if s.Outbound != nil {
		return s.Outbound
	}
	return &outbound.Policy{}
}

// GetWebhook returns orgID's webhook; store.ErrNotFound if none.
func (s *Service) GetWebhook(ctx context.Context, orgID string) (Webhook, error) {
	w, err := s.Store.GetEgressWebhook(ctx, orgID)
	if err != nil {
		return Webhook{}, err
	}
	return webhookView(w), nil
}

// DeleteWebhook removes orgID's webhook; store.ErrNotFound if none.
func (s *Service) DeleteWebhook(ctx context.Context, orgID string) error {
	return s.Store.DeleteEgressWebhook(ctx, orgID)
}

func webhookView(w store.EgressWebhook) Webhook {
	v := Webhook{ID: w.ID, URL: w.URL, CreatedAt: w.CreatedAt, Cursor: FormatCursor(w.DeliveredSeq), FailedAttempts: w.Attempts, LastError: w.LastError}
	if w.Attempts > 0 {
		t := w.NextAttemptAt
		v.NextAttemptAt = &t
	}
	if !w.LastSuccessAt.IsZero() {
		t := w.LastSuccessAt
		v.LastSuccessAt = &t
	}
	return v
}

// Sign is the SignatureHeader value of body sent at t under secret:
// "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>".
// The timestamp is signed too, so a receiver can refuse old replays.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return m.Sum(nil)
}

// VerifySignature checks a SignatureHeader value against body and
// secret, as a receiver does: the MAC must match (compared in constant
// time) and the timestamp be within tolerance of now (0: any).
func VerifySignature(secret, header string, body []byte, now time.Time, tolerance time.Duration) error {
	var ts string
	var sigs [][]byte
	for part := range strings.SplitSeq(header, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			if b, err := hex.DecodeString(v); err == nil {
				sigs = append(sigs, b)
			}
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || len(sigs) == 0 {
		return errors.New("signature header must be t=<unix seconds>,v1=<hex>")
	}
	want := mac(secret, ts, body)
	ok := false
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			ok = true
		}
	}
	if !ok {
		return errors.New("signature does not match")
	}
	if d := now.Sub(time.Unix(sec, 0)); tolerance > 0 && (d > tolerance || d < -tolerance) {
		return fmt.Errorf("signature timestamp is %s away from now", d.Round(time.Second))
	}
	return nil
}

// RunDeliveries delivers due webhooks every interval, and at once after
// a change, until ctx ends.
func (s *Service) RunDeliveries(ctx context.Context, every time.Duration) {
	periodic.DoNowAndOnWake(ctx, every, &s.deliverNow, func() { s.Deliver(ctx) })
}

// Deliver makes one delivery attempt to every webhook that is behind the
// feed and due; a receiver that is still behind after a success (the
// feed had more than a page) is tried again at once.
func (s *Service) Deliver(ctx context.Context) {
	for range 100 { // bound the catch-up of one call
		due, err := s.Store.DueEgressWebhooks(ctx, s.now())
		if err != nil {
			s.log().Error("allowlist webhooks", "error", err)
			return
		}
		progressed := false
		for _, w := range due {
			if ctx.Err() != nil {
				return
			}
			if s.deliver(ctx, w) {
				progressed = true
			}
		}
		if !progressed {
			return
		}
	}
}

func (s *Service) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// deliver sends one page of the feed after the webhook's cursor and
// records the outcome; it reports whether the receiver took it.
func (s *Service) deliver(ctx context.Context, w store.EgressWebhook) bool {
	page, err := s.page(ctx, w.DeliveredSeq, DefaultPageSize)
	if err != nil || len(page.Changes) == 0 {
		return false
	}
	sendErr := s.send(ctx, w, page)
	now := s.now()
	d := store.EgressDelivery{At: now, DeliveredSeq: w.DeliveredSeq}
	if sendErr == nil {
		d.OK = true
		d.DeliveredSeq, _ = ParseCursor(page.Cursor)
	} else {
		d.Attempts = w.Attempts + 1
		d.NextAttemptAt = now.Add(s.backoff(d.Attempts))
		d.Error = sendErr.Error()
		s.log().Warn("allowlist webhook delivery failed", "org", w.OrgID, "webhook", w.ID, "attempt", d.Attempts, "retry_at", d.NextAttemptAt, "error", d.Error)
	}
	if err := s.Store.RecordEgressDelivery(ctx, w.OrgID, w.ID, d); err != nil {
		s.log().Error("allowlist webhooks", "error", err)
		return false
	}
	return d.OK
}

// backoff is the wait after the nth failed attempt in a row.
func (s *Service) backoff(n int) time.Duration {
	lo, hi := s.RetryMin, s.RetryMax
	if lo <= 0 {
		lo = 10 * time.Second
	}
	if hi <= 0 {
		hi = time.Hour
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// send POSTs page to the webhook. Its errors are tailgate's words: the
// receiver's answer is drained and dropped, never quoted.
func (s *Service) send(ctx context.Context, w store.EgressWebhook, page ChangePage) error {
	secret, err := s.Vault.Open(w.Secret, w.OrgID, sealPurpose)
	if err != nil {
		return fmt.Errorf("the signing secret cannot be opened (%v); set the webhook again", err)
	}
	defer clear(secret)
	body, err := json.Marshal(page)
	if err != nil {
		return err
	}
	timeout := s.DeliveryTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return errors.New("the webhook URL cannot be requested; set it again")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "tailgate-webhook/1")
	req.Header.Set(EventHeader, EventEgressChanges)
	req.Header.Set(WebhookIDHeader, w.ID)
	req.Header.Set(SignatureHeader, Sign(string(secret), s.now(), body))
	resp, err := s.policy().Client(timeout).Do(req)
	if err != nil {
		var re *outbound.RefusedError
		if errors.As(err, &re) {
			return fmt.Errorf("refused by the outbound policy: %v", re)
		}
		if errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "Client.Timeout") {
			return fmt.Errorf("the receiver did not answer within %s", timeout)
		}
		return fmt.Errorf("could not reach the receiver: %s", netReason(err))
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
	switch {
	case outbound.IsRedirect(resp.StatusCode):
		return fmt.Errorf("the receiver answered %d, a redirect, which tailgate does not follow; set the final URL", resp.StatusCode)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("the receiver answered %d", resp.StatusCode)
	}
	return nil
}

// netReason is a dial or transport error without the URL (which may carry
// a token in its query) and without anything the receiver sent.
func netReason(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("allowlist: crypto/rand failed: " + err.Error())
	}
	return b
}
