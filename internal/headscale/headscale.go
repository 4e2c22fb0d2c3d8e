// Package headscale is tailgate's control plane for self-hosted tailnets run
// by headscale (github.com/juanfont/headscale, v0.29), over its REST API v1.
//
// # Overview
//
// Client implements tsapi.ControlPlane, so connect, verify and runs work the
// same on headscale as on Tailscale. Two clients exist, as on Tailscale:
//
//   - New(url, apiKey) is the admin's client: it authenticates with a
//     headscale API key (`headscale apikeys create`), which connect uses
//     once and forgets. It reads and writes the policy, mints pre-auth keys,
//     lists nodes, approves routes and deletes nodes.
//   - NewMinting(url, keyID, key) is the environment's durable credential
//     at work: it holds no API key, only the stored pre-auth key, and every
//     other call fails with tsapi.ErrForbidden.
//
// # How headscale differs from Tailscale
//
// headscale has no OAuth clients. The narrowest durable credential it offers
// is a pre-auth key, so CreateOAuthClient creates a reusable, ephemeral,
// tagged pre-auth key that expires (CredentialLifetime, 90 days by default)
// and returns it as the OAuthClient (ID = the key's id, Secret = the key).
// Minting with it cannot call headscale (a pre-auth key cannot create
// pre-auth keys), so NewMinting's CreateAuthKey hands back the stored key
// itself: every run node joins with the same reusable key instead of a fresh
// single-use one. Each node is still ephemeral and carries only the
// environment's tag, so it is removed when it logs out and is granted only
// what the policy grants the tag. Revoking (DeleteKey, on disconnect)
// expires the key: no new node can join with it.
//
// headscale's policy has no ETag. Policy returns a synthetic one (a hash
// of the text); SetPolicy with it re-reads the policy and refuses with
// tsapi.ErrPreconditionFailed if it changed, writes, then reads it back and
// reports ErrPreconditionFailed as well if someone else wrote in between, so
// connect's read–edit–write loop starts again from the newer policy. Writers
// inside one tailgate process are serialised per server.
//
// headscale refuses autogroup:admin as a tag owner: TagOwners says whom to
// name instead (see connect's self-hosted support).
//
// # A URL the tenant chose
//
// The server URL comes from an org admin, so whatever answers there is
// untrusted. The client never follows a redirect (a 3xx is an error that
// says so), and never repeats what the server answered in an error: errors
// say what failed in tailgate's words, with the HTTP status. Which
// addresses it may reach is the HTTPClient's business: connect passes one
// built by package outbound, which refuses metadata, link-local and
// (unless the operator allows them) loopback and private addresses.
//
// # Usage
//
//	admin := headscale.New("https://hs.example.com", apiKey)
//	oc, err := admin.CreateOAuthClient(ctx, nil, []string{"tag:tailgate-staging"}, "tailgate staging")
//	runner := headscale.NewMinting("https://hs.example.com", oc.ID, oc.Secret, []string{"tag:tailgate-staging"})
//	key, err := runner.CreateAuthKey(ctx, tsapi.AuthKeyRequest{Ephemeral: true, Tags: []string{"tag:tailgate-staging"}})
package headscale

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/redact"

	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// CredentialLifetime is how long the environment's stored pre-auth key
// lives when Client.CredentialLifetime is zero. headscale keys must expire;
// reconnecting the environment makes a new one.
const CredentialLifetime = 90 * 24 * time.Hour

// Client is a tsapi.ControlPlane for one headscale server. It is safe for
// concurrent use.
type Client struct {
	base   string
	apiKey string // empty for a minting client
	// minting credential (NewMinting): the stored pre-auth key.
	keyID, key string
	keyTags    []string

	// HTTPClient is used for every call; when nil, a client without an
	// address policy that does not follow redirects. Whatever it is, a
	// redirect answer is reported, never followed.
	HTTPClient *http.Client
	// CredentialLifetime is the lifetime of the pre-auth key
	// CreateOAuthClient makes; CredentialLifetime when zero.
	CredentialLifetime time.Duration
}

var _ tsapi.ControlPlane = (*Client)(nil)

// New returns the admin client of the headscale server at baseURL (its
// server_url, e.g. "http://127.0.0.1:8080"), authenticated with an API key.
func New(baseURL, apiKey string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), apiKey: apiKey}
}

// NewMinting returns the client of an environment's stored credential: the
// reusable, ephemeral, tagged pre-auth key CreateOAuthClient made. It only
// mints (returns that key); every other call is tsapi.ErrForbidden. tags
// are the key's tags, as stored with the connection.
func NewMinting(baseURL, keyID, key string, tags []string) *Client {
	return &Client{base: strings.TrimRight(baseURL, "/"), keyID: keyID, key: key, keyTags: slices.Clone(tags)}
}

// CheckURL reports whether s can be a headscale server URL: http or https,
// a host, no credentials, query or fragment.
func CheckURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return fmt.Errorf("headscale URL %q: %w", s, err)
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("headscale URL %q: the scheme must be http or https", s)
	case u.Host == "":
		return fmt.Errorf("headscale URL %q: no host", s)
	case u.User != nil:
		return errors.New("headscale URL: must not contain credentials; send the API key as api_token")
	case u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("headscale URL %q: must not have a query or fragment", s)
	}
	return nil
}

// writers serialises policy writes per headscale server inside this
// process, so tailgate's own concurrent connects never race each other;
// the re-read after a write catches everyone else.
var writers sync.Map // base URL → *sync.Mutex

func (c *Client) writeLock() *sync.Mutex {
	m, _ := writers.LoadOrStore(c.base, new(sync.Mutex))
	return m.(*sync.Mutex)
}

// noRedirects is the client of a Client without an HTTPClient.
var noRedirects = &http.Client{
	Timeout:       time.Minute,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

func (c *Client) httpClient() *http.Client {
	hc := c.HTTPClient
	if hc == nil {
		return noRedirects
	}
	if hc.CheckRedirect == nil {
		// Go's default follows redirects and keeps Authorization on a
		// same-host one; ours follows none.
		cp := *hc
		cp.CheckRedirect = noRedirects.CheckRedirect
		return &cp
	}
	return hc
}

// errNoPolicy is headscale's answer to reading the policy of a server in
// database mode that has none yet.
var errNoPolicy = errors.New("headscale has no policy yet")

// do calls the API. out may be nil. A non-2xx answer is an *tsapi.APIError
// (or whatever wrap turns it into); no answer is a *tsapi.CallError.
func (c *Client) do(ctx context.Context, op, method, path string, in, out any) error {
	if c.apiKey == "" {
		return &tsapi.APIError{Op: op, Status: http.StatusForbidden,
			Message: "the environment's stored headscale credential is a pre-auth key: it can only join nodes"}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: encode request: %w", op, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+"/api/v1"+path, body)
	if err != nil {
		return fmt.Errorf("%s: %s", op, c.redact(err.Error()))
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		var refused *outbound.RefusedError
		if errors.As(err, &refused) {
			return fmt.Errorf("%s: %w", op, refused)
		}
		return callError(op, c.redact(err.Error()), ctx.Err())
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 == 3 {
		return &tsapi.APIError{Op: op, Status: resp.StatusCode,
			Message: "the control URL answered with a redirect, which tailgate does not follow; give headscale's server_url exactly"}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return callError(op, c.redact(err.Error()), ctx.Err())
	}
	if resp.StatusCode/100 != 2 {
		if op == "read policy" && resp.StatusCode == http.StatusInternalServerError && strings.Contains(upstreamMessage(b), "not found") {
			return errNoPolicy
		}
		return &tsapi.APIError{Op: op, Status: resp.StatusCode, Message: statusMessage(resp.StatusCode)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			// json's error may quote the answer; say what it means instead.
			return fmt.Errorf("%s: the answer is not headscale's JSON; is the control URL headscale's server_url?", op)
		}
	}
	return nil
}

// callError builds a tsapi.CallError; its fields are unexported, so it is
// made by wrapping through a cancelled call's shape: the message, and the
// context error if any (errors.Is(err, context.DeadlineExceeded) works).
func callError(op, msg string, ctxErr error) error {
	if ctxErr != nil {
		return fmt.Errorf("%s: no answer from headscale: %s: %w", op, msg, ctxErr)
	}
	return fmt.Errorf("%s: no answer from headscale: %s", op, msg)
}

// upstreamMessage is grpc-gateway's {"code","message"} message, for
// recognising an answer; it is never repeated to anyone.
func upstreamMessage(b []byte) string {
	var e struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(b, &e)
	return e.Message
}

// statusMessage says what a failed answer means, in tailgate's words: the
// server at the URL is the tenant's choice and its body may be anything,
// so it is not repeated.
func statusMessage(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "headscale refused the API key"
	case http.StatusForbidden:
		return "headscale refused the call with this credential"
	case http.StatusNotFound:
		return "the control URL has no such headscale API endpoint; is it headscale's server_url?"
	case http.StatusBadRequest:
		return "headscale refused the request as malformed"
	}
	return "headscale answered with an error" // APIError adds the status
}

// redact removes the credentials this client holds, and anything shaped
// like a credential, from a message.
func (c *Client) redact(s string) string { return redact.Secrets(s, c.apiKey, c.key) }

// etag is the synthetic version of a policy text.
func etag(policy string) string {
	sum := sha256.Sum256([]byte(policy))
	return `"` + hex.EncodeToString(sum[:16]) + `"`
}

type policyBody struct {
	Policy string `json:"policy"`
}

// Policy implements tsapi.ControlPlane. headscale must run with
// policy.mode: database; in file mode the API has no policy to serve.
func (c *Client) Policy(ctx context.Context) (tsapi.Policy, error) {
	var p policyBody
	if err := c.do(ctx, "read policy", http.MethodGet, "/policy", nil, &p); err != nil {
		if errors.Is(err, errNoPolicy) {
			// A fresh server in database mode has no policy yet: start
			// from an empty one.
			return tsapi.Policy{HuJSON: []byte("{}\n"), ETag: etag("")}, nil
		}
		return tsapi.Policy{}, err
	}
	return tsapi.Policy{HuJSON: []byte(p.Policy), ETag: etag(p.Policy)}, nil
}

// currentPolicy is the stored text, "" when there is none yet.
func (c *Client) currentPolicy(ctx context.Context) (string, error) {
	var p policyBody
	err := c.do(ctx, "read policy", http.MethodGet, "/policy", nil, &p)
	if errors.Is(err, errNoPolicy) {
		return "", nil
	}
	return p.Policy, err
}

// SetPolicy implements tsapi.ControlPlane. headscale has no If-Match: with
// an ETag this re-reads and compares before writing, and reads back after
// writing; a change by someone else either side is ErrPreconditionFailed.
// A write that was followed by someone else's is not undone: connect's retry
// reads theirs, finds its grants there or reapplies them.
func (c *Client) SetPolicy(ctx context.Context, hujson []byte, ifMatchETag string) error {
	mu := c.writeLock()
	mu.Lock()
	defer mu.Unlock()
	if ifMatchETag != "" {
		cur, err := c.currentPolicy(ctx)
		if err != nil {
			return err
		}
		if etag(cur) != ifMatchETag {
			return &tsapi.APIError{Op: "set policy", Status: http.StatusPreconditionFailed, Message: "the policy changed since it was read"}
		}
	}
	var out policyBody
	if err := c.do(ctx, "set policy", http.MethodPut, "/policy", policyBody{Policy: string(hujson)}, &out); err != nil {
		return policyError(err)
	}
	if ifMatchETag == "" {
		return nil
	}
	after, err := c.currentPolicy(ctx)
	if err != nil {
		return err
	}
	if after != string(hujson) {
		return &tsapi.APIError{Op: "set policy", Status: http.StatusPreconditionFailed,
			Message: "the policy was changed by someone else right after tailgate wrote it"}
	}
	return nil
}

// policyError turns headscale's refusal of a policy (400, or 500 from its
// parser) into a *tsapi.PolicyInvalidError. headscale's own sentence is
// not repeated (see statusMessage); `headscale policy check` shows it.
func policyError(err error) error {
	var ae *tsapi.APIError
	if errors.As(err, &ae) && (ae.Status == http.StatusBadRequest || ae.Status == http.StatusInternalServerError) {
		return &tsapi.PolicyInvalidError{Message: fmt.Sprintf(
			"headscale refused the edited policy (HTTP %d); run `headscale policy check` on it to see why", ae.Status)}
	}
	return err
}

// ValidatePolicy implements tsapi.ControlPlane with POST /policy/check.
func (c *Client) ValidatePolicy(ctx context.Context, hujson []byte) error {
	return policyError(c.do(ctx, "validate policy", http.MethodPost, "/policy/check", policyBody{Policy: string(hujson)}, nil))
}

// Settings implements tsapi.ControlPlane. headscale's API does not say
// whether the policy is managed elsewhere, and it has no Tailnet Lock.
func (c *Client) Settings(ctx context.Context) (tsapi.Settings, error) {
	if c.apiKey == "" {
		return tsapi.Settings{}, c.do(ctx, "read settings", "", "", nil, nil)
	}
	return tsapi.Settings{}, nil
}

type preAuthKey struct {
	ID         string    `json:"id"`
	Key        string    `json:"key"`
	Reusable   bool      `json:"reusable"`
	Ephemeral  bool      `json:"ephemeral"`
	Expiration time.Time `json:"expiration"`
	ACLTags    []string  `json:"aclTags"`
}

type createKeyRequest struct {
	Reusable   bool      `json:"reusable"`
	Ephemeral  bool      `json:"ephemeral"`
	Expiration time.Time `json:"expiration"`
	ACLTags    []string  `json:"aclTags"`
}

// CreateFederatedIdentity implements tsapi.ControlPlane: headscale has no
// workload identity federation.
func (c *Client) CreateFederatedIdentity(context.Context, tsapi.FederatedIdentityRequest) (tsapi.FederatedIdentity, error) {
	return tsapi.FederatedIdentity{}, fmt.Errorf("create federated identity: headscale: %w", tsapi.ErrFederationUnsupported)
}

// CreateOAuthClient implements tsapi.ControlPlane the only way headscale
// allows: a reusable, ephemeral pre-auth key with tags, expiring after
// CredentialLifetime. scopes and description have no headscale equivalent
// and are ignored.
func (c *Client) CreateOAuthClient(ctx context.Context, scopes, tags []string, description string) (tsapi.OAuthClient, error) {
	if len(tags) == 0 {
		return tsapi.OAuthClient{}, errors.New("create credential: headscale needs at least one tag for a credential that is not tied to a user")
	}
	life := c.CredentialLifetime
	if life == 0 {
		life = CredentialLifetime
	}
	k, err := c.createKey(ctx, "create credential", createKeyRequest{
		Reusable: true, Ephemeral: true, ACLTags: tags, Expiration: time.Now().Add(life).UTC(),
	})
	if err != nil {
		return tsapi.OAuthClient{}, err
	}
	return tsapi.OAuthClient{ID: k.ID, Secret: k.Key}, nil
}

// CreateAuthKey implements tsapi.ControlPlane. The admin client mints a
// fresh pre-auth key (Preauthorized and Description have no headscale
// equivalent). A minting client returns its stored key, provided the
// request asks for no tag the key does not carry and for an ephemeral key.
func (c *Client) CreateAuthKey(ctx context.Context, req tsapi.AuthKeyRequest) (tsapi.AuthKey, error) {
	if c.apiKey == "" {
		for _, t := range req.Tags {
			if !slices.Contains(c.keyTags, t) {
				return tsapi.AuthKey{}, &tsapi.APIError{Op: "mint auth key", Status: http.StatusForbidden,
					Message: fmt.Sprintf("the stored credential does not carry %s", t)}
			}
		}
		if !req.Ephemeral {
			return tsapi.AuthKey{}, &tsapi.APIError{Op: "mint auth key", Status: http.StatusForbidden,
				Message: "the stored credential only joins ephemeral nodes"}
		}
		return tsapi.AuthKey{ID: c.keyID, Key: c.key}, nil
	}
	exp := req.Expiry
	if exp <= 0 {
		// A headscale key without an expiration is already expired.
		exp = 90 * 24 * time.Hour
	}
	k, err := c.createKey(ctx, "mint auth key", createKeyRequest{
		Reusable: req.Reusable, Ephemeral: req.Ephemeral, ACLTags: req.Tags,
		Expiration: time.Now().Add(exp).Truncate(time.Second).Add(time.Second).UTC(),
	})
	if err != nil {
		return tsapi.AuthKey{}, err
	}
	return tsapi.AuthKey{ID: k.ID, Key: k.Key, Expires: k.Expiration}, nil
}

func (c *Client) createKey(ctx context.Context, op string, req createKeyRequest) (preAuthKey, error) {
	var out struct {
		PreAuthKey preAuthKey `json:"preAuthKey"`
	}
	if err := c.do(ctx, op, http.MethodPost, "/preauthkey", req, &out); err != nil {
		return preAuthKey{}, err
	}
	if out.PreAuthKey.Key == "" || out.PreAuthKey.ID == "" {
		return preAuthKey{}, fmt.Errorf("%s: headscale answered without a key", op)
	}
	return out.PreAuthKey, nil
}

// DeleteKey implements tsapi.ControlPlane: it expires the pre-auth key, so
// no node can join with it again. Nodes already joined stay until they log
// out (they are ephemeral); the policy decides what they reach.
func (c *Client) DeleteKey(ctx context.Context, keyID string) error {
	if keyID == "" {
		return errors.New("revoke key: empty id")
	}
	keys, err := c.preAuthKeys(ctx)
	if err != nil {
		return err
	}
	found := false
	for _, k := range keys {
		if k.ID == keyID {
			found = true
		}
	}
	if !found {
		return &tsapi.APIError{Op: "revoke key", Status: http.StatusNotFound, Message: "no pre-auth key with id " + keyID}
	}
	return c.do(ctx, "revoke key", http.MethodPost, "/preauthkey/expire", map[string]string{"id": keyID}, nil)
}

func (c *Client) preAuthKeys(ctx context.Context) ([]preAuthKey, error) {
	var out struct {
		PreAuthKeys []preAuthKey `json:"preAuthKeys"`
	}
	err := c.do(ctx, "list keys", http.MethodGet, "/preauthkey", nil, &out)
	return out.PreAuthKeys, err
}

type node struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	GivenName       string    `json:"givenName"`
	IPAddresses     []string  `json:"ipAddresses"`
	User            user      `json:"user"`
	LastSeen        time.Time `json:"lastSeen"`
	CreatedAt       time.Time `json:"createdAt"`
	Online          bool      `json:"online"`
	ApprovedRoutes  []string  `json:"approvedRoutes"`
	AvailableRoutes []string  `json:"availableRoutes"`
	Tags            []string  `json:"tags"`
	PreAuthKey      *struct {
		Ephemeral bool `json:"ephemeral"`
	} `json:"preAuthKey"`
}

type user struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// Devices implements tsapi.ControlPlane. Name is the node's given name
// (headscale's API does not say its MagicDNS base domain); EnabledRoutes
// are the approved routes.
func (c *Client) Devices(ctx context.Context) ([]tsapi.Device, error) {
	var out struct {
		Nodes []node `json:"nodes"`
	}
	if err := c.do(ctx, "list devices", http.MethodGet, "/node", nil, &out); err != nil {
		return nil, err
	}
	devs := make([]tsapi.Device, 0, len(out.Nodes))
	for _, n := range out.Nodes {
		d := tsapi.Device{
			ID: n.ID, Name: n.GivenName, Hostname: n.Name, User: n.User.Name, Tags: n.Tags,
			Ephemeral: n.PreAuthKey != nil && n.PreAuthKey.Ephemeral, Created: n.CreatedAt,
			AdvertisedRoutes: tsapi.ParsePrefixes(n.AvailableRoutes), EnabledRoutes: tsapi.ParsePrefixes(n.ApprovedRoutes),
		}
		if !n.Online {
			d.LastSeen = n.LastSeen
		}
		for _, a := range n.IPAddresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				d.Addresses = append(d.Addresses, ip)
			}
		}
		devs = append(devs, d)
	}
	return devs, nil
}

// ApproveRoutes implements tsapi.ControlPlane: headscale replaces the
// approved set, so this writes the union of the approved and the new routes.
func (c *Client) ApproveRoutes(ctx context.Context, deviceID string, routes []netip.Prefix) error {
	var cur struct {
		Node node `json:"node"`
	}
	if err := c.do(ctx, "approve routes", http.MethodGet, "/node/"+url.PathEscape(deviceID), nil, &cur); err != nil {
		return err
	}
	set := cur.Node.ApprovedRoutes
	for _, r := range routes {
		if s := r.Masked().String(); !slices.Contains(set, s) {
			set = append(set, s)
		}
	}
	if set == nil {
		set = []string{}
	}
	return c.do(ctx, "approve routes", http.MethodPost, "/node/"+url.PathEscape(deviceID)+"/approve_routes", map[string][]string{"routes": set}, nil)
}

// DeleteDevice implements tsapi.ControlPlane.
func (c *Client) DeleteDevice(ctx context.Context, deviceID string) error {
	return c.do(ctx, "delete device", http.MethodDelete, "/node/"+url.PathEscape(deviceID), nil, nil)
}

// TagOwners returns whom a headscale policy should name as the owner of
// tailgate's tags: headscale refuses autogroup:admin. It is the first user
// ("name@"); tailgate's nodes join with pre-auth keys, which need no owner,
// so the owner only matters to people tagging their own devices.
func (c *Client) TagOwners(ctx context.Context) ([]string, error) {
	var out struct {
		Users []user `json:"users"`
	}
	if err := c.do(ctx, "list users", http.MethodGet, "/user", nil, &out); err != nil {
		return nil, err
	}
	if len(out.Users) == 0 {
		return nil, errors.New("list users: headscale has no user to own tailgate's tag; create one (headscale users create NAME)")
	}
	first := out.Users[0]
	for _, u := range out.Users[1:] {
		if len(u.ID) < len(first.ID) || len(u.ID) == len(first.ID) && u.ID < first.ID {
			first = u
		}
	}
	return []string{first.Name + "@"}, nil
}
