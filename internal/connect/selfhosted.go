package connect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/tailgate-dev/tailgate/internal/grants"
	"github.com/tailgate-dev/tailgate/internal/headscale"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
)

// Control types a connection can use.
const (
	ControlTailscale = "tailscale"
	ControlHeadscale = "headscale"
)

// Control names the control server an environment's tailnet runs on. The
// zero value is the Service's own (Tailscale, or the sandbox). It is not
// secret: the connection remembers it so that verify and runs mint keys
// there and their nodes join it.
type Control struct {
	// Type is "tailscale" (or empty) or "headscale".
	Type string `json:"type,omitempty"`
	// URL is the headscale server_url, e.g. "https://hs.example.com".
	URL string `json:"url,omitempty"`
}

func (c Control) selfHosted() bool { return c.Type == ControlHeadscale }

func (c Control) check() error {
	switch c.Type {
	case "", ControlTailscale:
		if c.URL != "" {
			return &Error{Step: StepInput, Code: "bad_input", Message: "control.url: only a headscale control takes a URL"}
		}
	case ControlHeadscale:
		if err := headscale.CheckURL(c.URL); err != nil {
			return &Error{Step: StepInput, Code: "bad_input", Message: "control.url: " + err.Error()}
		}
	default:
		return &Error{Step: StepInput, Code: "bad_input", Message: fmt.Sprintf("control.type: %q is not tailscale or headscale", c.Type)}
	}
	return nil
}

// connDetail is what a connection's Detail holds: the plan, and the
// control it was made on (absent for the Service's own).
type connDetail struct {
	grants.Plan
	Control *Control `json:"control,omitempty"`
}

func detailFor(plan grants.Plan, c Control) []byte {
	d := connDetail{Plan: plan}
	if c.selfHosted() {
		d.Control = &c
	}
	b, _ := json.Marshal(d)
	return b
}

// ControlOf returns the control a stored connection was made on.
func ControlOf(conn store.Connection) Control {
	var d connDetail
	if json.Unmarshal(conn.Detail, &d) == nil && d.Control != nil {
		return *d.Control
	}
	return Control{}
}

// checkToken checks the admin's one-time credential for the control.
func checkToken(c Control, tok string) error {
	if err := c.check(); err != nil {
		return err
	}
	if !c.selfHosted() {
		return checkAPIToken(tok)
	}
	bad := func(msg string) error {
		return &Error{Step: StepInput, Code: "bad_input", Message: "api_token: " + msg}
	}
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

// adminClient is the control plane to connect or disconnect with.
func (s *Service) adminClient(c Control, token string) tsapi.ControlPlane {
	if c.selfHosted() {
		hc := headscale.New(c.URL, token)
		hc.HTTPClient = s.outboundClient()
		return hc
	}
	return s.apiClient(token)
}

// outboundPolicy is the policy for calls to a URL an org admin chose.
func (s *Service) outboundPolicy() *outbound.Policy {
	if s.Outbound != nil {
		return s.Outbound
	}
	return defaultOutbound
}

var defaultOutbound = &outbound.Policy{}

// outboundClients keeps one http.Client per policy, so connections to a
// control are reused across a connect's calls.
var outboundClients sync.Map // *outbound.Policy → *http.Client

// outboundTimeout bounds one call to a self-hosted control.
const outboundTimeout = 30 * time.Second

func (s *Service) outboundClient() *http.Client {
	p := s.outboundPolicy()
	if hc, ok := outboundClients.Load(p); ok {
		return hc.(*http.Client)
	}
	hc, _ := outboundClients.LoadOrStore(p, p.Client(outboundTimeout))
	return hc.(*http.Client)
}

// planTagOwners sets who owns the environment's tag where the control
// refuses the default owner (headscale has no autogroup:admin).
func planTagOwners(ctx context.Context, cp tsapi.ControlPlane, plan *grants.Plan) error {
	o, ok := cp.(interface {
		TagOwners(context.Context) ([]string, error)
	})
	if !ok {
		return nil
	}
	owners, err := o.TagOwners(ctx)
	if err != nil {
		return err
	}
	plan.TagOwners = owners
	return nil
}

// mintingClient is the control plane the stored credential works with.
//
// A self-hosted control's nodes join with tsnet, which dials the control
// URL with its own dialer, out of the outbound policy's reach. So the URL
// is checked here, before a key is handed out for it: a name that now
// resolves to a refused address (DNS changed since connect) mints nothing.
// Rebinding between this check and tsnet's own lookup remains possible;
// what tsnet sends there is the Noise handshake of a joining node, not a
// credential-bearing HTTP request, and nothing it hears is shown.
func (s *Service) mintingClient(ctx context.Context, conn store.Connection, secret string) tsapi.ControlPlane {
	if c := ControlOf(conn); c.selfHosted() {
		hc := headscale.NewMinting(c.URL, conn.OAuthClientID, secret, []string{conn.Tag})
		if err := s.outboundPolicy().CheckURL(ctx, c.URL); err != nil {
			return refusedControl{hc, err}
		}
		return hc
	}
	return s.oauthClient(ctx, conn.OAuthClientID, secret)
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

// controlURL is where a connection's nodes join.
func (s *Service) controlURL(conn store.Connection) string {
	if c := ControlOf(conn); c.selfHosted() {
		return c.URL
	}
	return s.ControlURL
}

// joinTags are the tags a node using the connection's credential
// advertises when it joins.
func joinTags(conn store.Connection) []string {
	if ControlOf(conn).selfHosted() {
		return nil
	}
	return []string{conn.Tag}
}

// rewordFor makes an *Error's sentence name headscale instead of
// Tailscale when the control is headscale.
//
// It also turns a call the outbound policy refused into bad_input that
// names the address and why, whatever step made it.
func rewordFor(c Control, err *error) {
	var e *Error
	if !c.selfHosted() || !errors.As(*err, &e) {
		return
	}
	var refused *outbound.RefusedError
	if errors.As(e.Err, &refused) {
		e.Code = "bad_input"
		e.Message = "control.url: " + refused.Error()
		return
	}
	e.Message = strings.ReplaceAll(e.Message, "Tailscale API access token", "headscale API key")
	e.Message = strings.ReplaceAll(e.Message, "Tailscale", "headscale")
}
