package tsapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"time"

	redactpkg "github.com/tailgate-dev/tailgate/internal/redact"

	"golang.org/x/oauth2"
	tailscale "tailscale.com/client/tailscale/v2"
)

// Client is the ControlPlane of a Tailscale tailnet, over the official
// API client (tailscale.com/client/tailscale/v2). It is safe for
// concurrent use.
type Client struct {
	api *tailscale.Client
	err error // a bad base URL, reported by every call
}

var _ ControlPlane = (*Client)(nil)

// requestTimeout bounds each API call that has no earlier deadline.
const requestTimeout = 30 * time.Second

// NewWithAPIToken returns a Client that authenticates with an API access
// token (tskey-api-...). baseURL is the API origin without /api/v2, e.g.
// "https://api.tailscale.com" (the default when empty) or a fake's URL.
func NewWithAPIToken(baseURL, token string) *Client {
	c := newClient(baseURL)
	if c.api != nil {
		c.api.APIKey = token
	}
	return c
}

// NewWithOAuth returns a Client that authenticates as an OAuth client: the
// official client exchanges the id and secret for 1-hour access tokens
// (client credentials) on first use and again when they expire. scopes
// may narrow the token to fewer scopes than the client has; nil asks for
// all of them. ctx is not retained: the exchange happens lazily, inside
// the first call, and its failure (wrong or revoked credentials) is
// reported by that call as ErrUnauthorized.
func NewWithOAuth(ctx context.Context, baseURL, clientID, clientSecret string, scopes []string) *Client {
	_ = ctx
	c := newClient(baseURL)
	if c.api != nil {
		c.api.Auth = &tailscale.OAuth{ClientID: clientID, ClientSecret: clientSecret, Scopes: slices.Clone(scopes)}
	}
	return c
}

func newClient(baseURL string) *Client {
	if baseURL == "" {
		baseURL = "https://api.tailscale.com"
	}
	u, err := url.Parse(baseURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		// The URL is not a secret, but keep the error short and clear.
		return &Client{err: fmt.Errorf("tsapi: invalid API base URL %q", redact(baseURL))}
	}
	return &Client{api: &tailscale.Client{
		BaseURL:   u,
		UserAgent: "tailgate",
		HTTP: &http.Client{
			Timeout:   time.Minute,
			Transport: recordingTransport{base: http.DefaultTransport},
		},
	}}
}

// Policy implements ControlPlane.
func (c *Client) Policy(ctx context.Context) (Policy, error) {
	const op = "get policy"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return Policy{}, c.err
	}
	raw, err := c.api.PolicyFile().Raw(ctx)
	if err != nil {
		return Policy{}, c.fail(op, ex, err)
	}
	// Raw exposes the ETag header, so no escape hatch is needed here.
	return Policy{HuJSON: []byte(raw.HuJSON), ETag: raw.ETag}, nil
}

// SetPolicy implements ControlPlane.
func (c *Client) SetPolicy(ctx context.Context, hujson []byte, ifMatchETag string) error {
	const op = "set policy"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return c.err
	}
	// A string body is sent as application/hujson, keeping comments.
	if err := c.api.PolicyFile().Set(ctx, string(hujson), ifMatchETag); err != nil {
		return c.fail(op, ex, err)
	}
	return nil
}

// ValidatePolicy implements ControlPlane.
func (c *Client) ValidatePolicy(ctx context.Context, hujson []byte) error {
	const op = "validate policy"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return c.err
	}
	err := c.api.PolicyFile().Validate(ctx, string(hujson))
	if err == nil {
		return nil
	}
	// The API answers 200 with {"message","data"} for an invalid policy,
	// and the official client folds that into a plain fmt error. Its
	// exported hook (Client.HTTP) lets recordingTransport keep the body,
	// from which the message and details are read here.
	if ex.status == http.StatusOK {
		if perr := policyErrorFromBody(ex.body); perr != nil {
			return perr
		}
	}
	return c.fail(op, ex, err)
}

// Settings implements ControlPlane.
func (c *Client) Settings(ctx context.Context) (Settings, error) {
	const op = "get tailnet settings"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return Settings{}, c.err
	}
	s, err := c.api.TailnetSettings().Get(ctx)
	if err != nil {
		return Settings{}, c.fail(op, ex, err)
	}
	return Settings{ACLsExternallyManaged: s.ACLsExternallyManagedOn, ACLsExternalLink: s.ACLsExternalLink}, nil
}

// CreateOAuthClient implements ControlPlane.
func (c *Client) CreateOAuthClient(ctx context.Context, scopes, tags []string, description string) (OAuthClient, error) {
	const op = "create OAuth client"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return OAuthClient{}, c.err
	}
	k, err := c.api.Keys().CreateOAuthClient(ctx, tailscale.CreateOAuthClientRequest{
		Scopes: scopes, Tags: tags, Description: description,
	})
	if err != nil {
		return OAuthClient{}, c.fail(op, ex, err)
	}
	return OAuthClient{ID: k.ID, Secret: k.Key}, nil
}

// CreateAuthKey implements ControlPlane.
func (c *Client) CreateAuthKey(ctx context.Context, req AuthKeyRequest) (AuthKey, error) {
	const op = "create auth key"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return AuthKey{}, c.err
	}
	if req.Expiry < 0 {
		return AuthKey{}, fmt.Errorf("tsapi: %s: negative expiry %v", op, req.Expiry)
	}
	var ckr tailscale.CreateKeyRequest
	ckr.Capabilities.Devices.Create.Reusable = req.Reusable
	ckr.Capabilities.Devices.Create.Ephemeral = req.Ephemeral
	ckr.Capabilities.Devices.Create.Preauthorized = req.Preauthorized
	ckr.Capabilities.Devices.Create.Tags = req.Tags
	ckr.ExpirySeconds = int64((req.Expiry + time.Second - 1) / time.Second)
	ckr.Description = req.Description
	k, err := c.api.Keys().CreateAuthKey(ctx, ckr)
	if err != nil {
		return AuthKey{}, c.fail(op, ex, err)
	}
	return AuthKey{ID: k.ID, Key: k.Key, Expires: k.Expires}, nil
}

// Devices implements ControlPlane.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	const op = "list devices"
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return nil, c.err
	}
	// Routes are only listed with fields=all.
	list, err := c.api.Devices().List(ctx, tailscale.WithFields(tailscale.IncludeFieldsAll))
	if err != nil {
		return nil, c.fail(op, ex, err)
	}
	out := make([]Device, 0, len(list))
	for _, d := range list {
		out = append(out, deviceFromAPI(d))
	}
	return out, nil
}

func deviceFromAPI(d tailscale.Device) Device {
	id := d.NodeID
	if id == "" {
		id = d.ID
	}
	dev := Device{
		ID:               id,
		Name:             d.Name,
		Hostname:         d.Hostname,
		User:             d.User,
		Tags:             d.Tags,
		Ephemeral:        d.IsEphemeral,
		Created:          d.Created.Time,
		AdvertisedRoutes: ParsePrefixes(d.AdvertisedRoutes),
		EnabledRoutes:    ParsePrefixes(d.EnabledRoutes),
	}
	if d.LastSeen != nil {
		dev.LastSeen = d.LastSeen.Time
	}
	for _, a := range d.Addresses {
		// Skip what does not parse rather than fail the whole list: one odd
		// device must not block connecting to the others.
		if ip, err := netip.ParseAddr(a); err == nil {
			dev.Addresses = append(dev.Addresses, ip)
		}
	}
	return dev
}

// ParsePrefixes parses the routes a control plane reports, skipping any it
// cannot parse rather than failing a whole device list.
func ParsePrefixes(ss []string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ApproveRoutes implements ControlPlane. The API only offers "replace the
// enabled set", so this reads the set and writes the union; a concurrent
// change to the same device's routes between the two calls can be lost
// (the API has no precondition for routes).
func (c *Client) ApproveRoutes(ctx context.Context, deviceID string, routes []netip.Prefix) error {
	op := fmt.Sprintf("approve routes %v on device %s", routes, deviceID)
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return c.err
	}
	cur, err := c.api.Devices().SubnetRoutes(ctx, deviceID)
	if err != nil {
		return c.fail(op, ex, err)
	}
	enabled := slices.Clone(cur.Enabled)
	added := false
	for _, r := range routes {
		s := r.Masked().String()
		if !slices.Contains(enabled, s) {
			enabled = append(enabled, s)
			added = true
		}
	}
	if !added {
		return nil
	}
	if err := c.api.Devices().SetSubnetRoutes(ctx, deviceID, enabled); err != nil {
		return c.fail(op, ex, err)
	}
	return nil
}

// DeleteDevice implements ControlPlane.
func (c *Client) DeleteDevice(ctx context.Context, deviceID string) error {
	op := "delete device " + deviceID
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return c.err
	}
	if err := c.api.Devices().Delete(ctx, deviceID); err != nil {
		return c.fail(op, ex, err)
	}
	return nil
}

// DeleteKey implements ControlPlane.
func (c *Client) DeleteKey(ctx context.Context, keyID string) error {
	op := "delete key " + keyID
	ctx, ex, cancel := c.begin(ctx)
	defer cancel()
	if c.err != nil {
		return c.err
	}
	if err := c.api.Keys().Delete(ctx, keyID); err != nil {
		return c.fail(op, ex, err)
	}
	return nil
}

// begin bounds a call and attaches an exchange for recordingTransport.
func (c *Client) begin(ctx context.Context) (context.Context, *exchange, context.CancelFunc) {
	ex := new(exchange)
	ctx = context.WithValue(ctx, exchangeKey{}, ex)
	if _, ok := ctx.Deadline(); ok {
		return ctx, ex, func() {}
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	return ctx, ex, cancel
}

// exchange is the last response of a call, as recordingTransport saw it.
type exchange struct {
	status int
	body   []byte
}

type exchangeKey struct{}

// maxRecorded bounds how much of a response body is kept.
const maxRecorded = 8 << 20

// recordingTransport keeps the status and body of each API response for
// the call that made it. The official client does not return the status
// and body of every failure (validate folds them into a string; a non-JSON
// error body loses the status), and its Client.HTTP field is the exported
// escape hatch for seeing them without writing our own API client.
type recordingTransport struct{ base http.RoundTripper }

func (t recordingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	ex, ok := req.Context().Value(exchangeKey{}).(*exchange)
	if err != nil || !ok {
		return resp, err
	}
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxRecorded))
	resp.Body.Close()
	if rerr != nil {
		return nil, rerr
	}
	ex.status, ex.body = resp.StatusCode, body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// apiErrorBody is the API's error shape.
type apiErrorBody struct {
	Message string                   `json:"message"`
	Data    []tailscale.APIErrorData `json:"data"`
}

func policyErrorFromBody(body []byte) *PolicyInvalidError {
	var b apiErrorBody
	if json.Unmarshal(body, &b) != nil || b.Message == "" {
		return nil
	}
	return newPolicyInvalid(b.Message, b.Data)
}

func newPolicyInvalid(msg string, data []tailscale.APIErrorData) *PolicyInvalidError {
	e := &PolicyInvalidError{Message: redact(msg)}
	for _, d := range data {
		for _, s := range d.Errors {
			if d.User != "" {
				s = d.User + ": " + s
			}
			e.Details = append(e.Details, redact(s))
		}
	}
	return e
}

// fail turns whatever the official client returned into an *APIError, a
// *PolicyInvalidError or a *CallError, none of which can carry a secret.
func (c *Client) fail(op string, ex *exchange, err error) error {
	var apiErr tailscale.APIError
	if errors.As(err, &apiErr) {
		if apiErr.Status == http.StatusBadRequest && (op == "set policy" || op == "validate policy") {
			return newPolicyInvalid(apiErr.Message, apiErr.Data)
		}
		msg := apiErr.Message
		if msg == "" {
			msg = http.StatusText(apiErr.Status)
		}
		return &APIError{Op: op, Status: apiErr.Status, Message: redact(msg)}
	}
	// The ID token exchange of a federated identity was refused: say why,
	// in the control plane's words (expired, audience, subject, unknown
	// identity).
	var xerr *exchangeError
	if errors.As(err, &xerr) {
		status := xerr.status
		if status == http.StatusBadRequest {
			status = http.StatusUnauthorized // invalid_grant: the token, not the request
		}
		return &APIError{Op: op + " (ID token exchange)", Status: status, Message: redact("federated identity refused the ID token: " + xerr.reason)}
	}
	// The OAuth exchange failed: wrong, unknown or revoked client
	// credentials, or a scope the client does not have.
	var rerr *oauth2.RetrieveError
	if errors.As(err, &rerr) {
		status := http.StatusUnauthorized
		msg := "OAuth client credentials rejected"
		switch {
		case rerr.ErrorCode == "invalid_scope":
			status, msg = http.StatusForbidden, "OAuth client lacks a requested scope"
		case rerr.ErrorCode == "invalid_client", rerr.Response != nil && rerr.Response.StatusCode == http.StatusUnauthorized:
		case rerr.Response != nil && rerr.Response.StatusCode >= 500:
			status, msg = rerr.Response.StatusCode, "OAuth token exchange failed"
		}
		if rerr.ErrorDescription != "" {
			msg += ": " + rerr.ErrorDescription
		}
		return &APIError{Op: op + " (OAuth token exchange)", Status: status, Message: redact(msg)}
	}
	// An error status whose body the official client could not decode.
	if ex.status >= 400 {
		return &APIError{Op: op, Status: ex.status, Message: http.StatusText(ex.status)}
	}
	return &CallError{Op: op, msg: redact(err.Error()), cause: contextCause(err)}
}

// CallError is a call that got no answer from the API: the network, a
// timeout, or cancellation (errors.Is(err, context.DeadlineExceeded)).
type CallError struct {
	Op    string
	msg   string
	cause error
}

func (e *CallError) Error() string { return "tsapi: " + e.Op + ": " + e.msg }

// Unwrap exposes only context errors, never the transport error itself,
// whose text was redacted into Error.
func (e *CallError) Unwrap() error { return e.cause }

func contextCause(err error) error {
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	}
	return nil
}

// redact is the one place that removes credentials from text that leaves
// this package (error messages from the API or the transport).
func redact(s string) string { return redactpkg.Secrets(s) }
