package tsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"
	tailscale "tailscale.com/client/tailscale/v2"
)

// NewWithFederation returns a Client that authenticates as a federated
// identity (workload identity federation): on first use, and again when
// the access token expires, it asks idToken for a fresh ID token and
// exchanges it at POST /api/v2/oauth/token-exchange (form client_id and
// jwt, the wire format of the official client's IdentityFederation and of
// tailscale.com/feature/identityfederation) for a 1-hour API token.
//
// It plugs into the official client through its Auth hook rather than
// using tailscale.IdentityFederation, whose errors are strings: here a
// refused exchange is an *APIError with the control plane's own reason
// (expired token, wrong audience, unknown identity), matching
// ErrUnauthorized, so callers can say why a run could not join.
func NewWithFederation(baseURL, clientID string, idToken func(context.Context) (string, error)) *Client {
	c := newClient(baseURL)
	if c.api != nil {
		c.api.Auth = &federation{clientID: clientID, idToken: idToken}
	}
	return c
}

// CreateFederatedIdentity implements ControlPlane.
func (c *Client) CreateFederatedIdentity(ctx context.Context, req FederatedIdentityRequest) (FederatedIdentity, error) {
	const op = "create federated identity"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return FederatedIdentity{}, c.err
	}
	k, err := c.api.Keys().CreateFederatedIdentity(ctx, tailscale.CreateFederatedIdentityRequest{
		Scopes: req.Scopes, Tags: req.Tags, Issuer: req.Issuer, Subject: req.Subject,
		Audience: req.Audience, Description: req.Description,
	})
	if err != nil {
		return FederatedIdentity{}, c.fail(op, ex, err)
	}
	if k.ID == "" || k.Audience == "" {
		return FederatedIdentity{}, &APIError{Op: op, Status: ex.status, Message: "the answer names no identity id or audience"}
	}
	return FederatedIdentity{ID: k.ID, Issuer: k.Issuer, Subject: k.Subject, Audience: k.Audience}, nil
}

// federation is the official client's Auth for a federated identity.
type federation struct {
	clientID string
	idToken  func(context.Context) (string, error)
}

func (f *federation) HTTPClient(orig *http.Client, baseURL string) *http.Client {
	src := &exchangeSource{http: orig, url: strings.TrimRight(baseURL, "/") + "/api/v2/oauth/token-exchange", f: f}
	return &http.Client{
		Transport:     &oauth2.Transport{Base: orig.Transport, Source: oauth2.ReuseTokenSource(nil, src)},
		CheckRedirect: orig.CheckRedirect,
		Jar:           orig.Jar,
		Timeout:       orig.Timeout,
	}
}

// exchangeSource exchanges a fresh ID token for an API token each time
// the previous one expired.
type exchangeSource struct {
	http *http.Client
	url  string
	f    *federation
}

// exchangeError is a token exchange the control plane refused.
type exchangeError struct {
	status int
	code   string // OAuth error code, e.g. "invalid_grant"
	reason string
}

func (e *exchangeError) Error() string {
	return fmt.Sprintf("token exchange refused (HTTP %d %s): %s", e.status, e.code, e.reason)
}

// exchangeTimeout bounds one exchange (oauth2.TokenSource has no context).
const exchangeTimeout = 30 * time.Second

func (s *exchangeSource) Token() (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(context.Background(), exchangeTimeout)
	defer cancel()
	jwt, err := s.f.idToken(ctx)
	if err != nil {
		return nil, fmt.Errorf("sign ID token: %w", err)
	}
	form := url.Values{"client_id": {s.f.clientID}, "jwt": {jwt}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, strings.NewReader(form))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	var ans struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
		Error       string `json:"error"`
		Description string `json:"error_description"`
		Message     string `json:"message"`
	}
	jerr := json.Unmarshal(body, &ans)
	if resp.StatusCode >= 400 {
		reason := ans.Description
		if reason == "" {
			reason = ans.Message
		}
		if reason == "" {
			reason = http.StatusText(resp.StatusCode)
		}
		return nil, &exchangeError{status: resp.StatusCode, code: ans.Error, reason: reason}
	}
	if jerr != nil || ans.AccessToken == "" {
		return nil, errors.New("token exchange: the answer holds no access token")
	}
	return &oauth2.Token{AccessToken: ans.AccessToken, TokenType: ans.TokenType,
		Expiry: time.Now().Add(time.Duration(ans.ExpiresIn) * time.Second)}, nil
}
