package controlplane

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tailgate-dev/tailgate/internal/headscale"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// headscaleProvider is a self-hosted headscale an org admin named: connect
// with a one-time API key, store a reusable ephemeral pre-auth key with the
// environment's tag (headscale cannot mint keys from a key), and join with
// it; the key carries the tag, so nodes advertise none. Every call goes
// through the outbound policy, since the URL is the tenant's choice.
type headscaleProvider struct {
	env *Env
	url string
}

func (p headscaleProvider) Control() Control { return Control{Type: Headscale, URL: p.url} }

func (p headscaleProvider) Words() Words {
	return Words{Product: "headscale", AdminCredential: "headscale API key"}
}

// CheckAdminCredential rejects what cannot be a headscale API key.
func (p headscaleProvider) CheckAdminCredential(tok string) error {
	bad := func(msg string) error { return &InputError{Field: "api_token", Message: msg} }
	switch {
	case tok == "":
		return bad("missing; create a headscale API key (headscale apikeys create --expiration 1h)")
	case !utf8.ValidString(tok) || strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r > '~' }):
		return bad("contains characters no headscale API key has")
	case len(tok) > 256:
		return bad("too long to be a headscale API key")
	case strings.HasPrefix(tok, "tskey-"):
		return bad("this is a Tailscale key; a headscale control needs a headscale API key")
	}
	return nil
}

func (p headscaleProvider) AdminClient(token string) tsapi.ControlPlane {
	hc := headscale.New(p.url, token)
	hc.HTTPClient = p.env.outboundClient()
	return hc
}

// MintingClient hands out the stored pre-auth key. tsnet dials the control
// URL with its own dialer, out of the outbound policy's reach, so the URL
// is checked here, before a key is handed out for it: a name that now
// resolves to a refused address (DNS changed since connect) mints nothing.
// Rebinding between this check and tsnet's own lookup remains possible;
// what tsnet sends there is the Noise handshake of a joining node, not a
// credential-bearing HTTP request, and nothing it hears is shown.
func (p headscaleProvider) MintingClient(ctx context.Context, c Credential) tsapi.ControlPlane {
	hc := headscale.NewMinting(p.url, c.ID, c.Secret, []string{c.Tag})
	if err := p.env.outboundPolicy().CheckURL(ctx, p.url); err != nil {
		return refusedControl{hc, err}
	}
	return hc
}

// CanFederate: headscale has no workload identity federation.
func (p headscaleProvider) CanFederate() bool { return false }

// SingleUseKeys: the stored pre-auth key is reusable; it never leaves the
// servers.
func (p headscaleProvider) SingleUseKeys() bool { return false }

func (p headscaleProvider) JoinURL() string { return p.url }

// JoinTags: headscale refuses tags advertised by a node joining with a
// pre-auth key, and gives it the key's.
func (p headscaleProvider) JoinTags(string) []string { return nil }

// TagOwners: headscale has no autogroup:admin; the tag is owned by the
// API key's user.
func (p headscaleProvider) TagOwners(ctx context.Context, admin tsapi.ControlPlane) ([]string, error) {
	o, ok := admin.(interface {
		TagOwners(context.Context) ([]string, error)
	})
	if !ok {
		return nil, nil
	}
	return o.TagOwners(ctx)
}

// refusedControl is a minting client whose control URL the outbound
// policy refuses: it mints nothing.
type refusedControl struct {
	*headscale.Client
	err error
}

func (r refusedControl) CreateAuthKey(context.Context, tsapi.AuthKeyRequest) (tsapi.AuthKey, error) {
	return tsapi.AuthKey{}, fmt.Errorf("mint auth key: control URL: %w", r.err)
}

var defaultOutbound = &outbound.Policy{}

func (e *Env) outboundPolicy() *outbound.Policy {
	if e.Outbound != nil {
		return e.Outbound
	}
	return defaultOutbound
}

// outboundClients keeps one http.Client per policy, so connections to a
// control are reused across a connect's calls.
var outboundClients sync.Map // *outbound.Policy → *http.Client

// outboundTimeout bounds one call to a self-hosted control.
const outboundTimeout = 30 * time.Second

func (e *Env) outboundClient() *http.Client {
	p := e.outboundPolicy()
	if hc, ok := outboundClients.Load(p); ok {
		return hc.(*http.Client)
	}
	hc, _ := outboundClients.LoadOrStore(p, p.Client(outboundTimeout))
	return hc.(*http.Client)
}
