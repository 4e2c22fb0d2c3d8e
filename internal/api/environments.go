package api

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	redactpkg "github.com/tailgate-dev/tailgate/internal/redact"

	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/errcode"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/grants"
	"github.com/tailgate-dev/tailgate/internal/store"
)

// Environment is an environment as the API shows it.
type Environment struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
	// State is the private network's state: disconnected, connected,
	// verified or failing.
	State string `json:"state"`
	// PrivateNetwork is the full status; only in GET /v1/environments/{env}.
	PrivateNetwork *connect.Status `json:"private_network,omitempty"`
}

// EnvironmentList is the answer of GET /v1/environments.
type EnvironmentList struct {
	Environments []Environment `json:"environments"`
}

// CreateEnvironmentRequest is the body of POST /v1/environments.
type CreateEnvironmentRequest struct {
	Name string `json:"name"`
}

// ConnectRequest is the body of PUT .../private-network.
type ConnectRequest struct {
	// APIToken is the admin's one-time Tailscale API access token. It is
	// used for this request only.
	APIToken string   `json:"api_token"`
	Targets  []string `json:"targets"`
	// Control is the control server of a self-hosted tailnet, e.g.
	// {"type": "headscale", "url": "https://hs.example.com"}; then
	// APIToken is a headscale API key. Absent means Tailscale.
	Control *controlplane.Control `json:"control,omitempty"`
}

// DisconnectRequest is the body of DELETE .../private-network.
type DisconnectRequest struct {
	APIToken string `json:"api_token"`
}

// envName reads and checks the {env} path segment.
func envName(r *http.Request) (string, error) {
	name := r.PathValue("env")
	if err := checkEnvName(name); err != nil {
		return "", err
	}
	return name, nil
}

// orgEnv is the environment named in the path, which must be one of the
// caller's org: another org's is answered like a missing one.
func (s *server) orgEnv(r *http.Request, p store.Principal) (store.Environment, error) {
	name, err := envName(r)
	if err != nil {
		return store.Environment{}, err
	}
	env, err := s.store.GetEnvironment(r.Context(), p.OrgID, name)
	if err != nil {
		return store.Environment{}, notFound(err, name)
	}
	return env, nil
}

func checkEnvName(name string) error {
	if name == "" {
		return apiErr(errcode.BadInput, "environment name is required")
	}
	if !grants.ValidEnvName(name) {
		shown := name
		if len(shown) > 50 || !utf8.ValidString(shown) || redactpkg.HasCredential(shown) {
			shown = "given"
		} else {
			shown = `"` + shown + `"`
		}
		return apiErr(errcode.BadInput, "environment name %s is invalid: use 1-40 lower-case letters, digits and hyphens (it becomes part of the Tailscale tag tag:tailgate-<name>)", shown)
	}
	return nil
}

func (s *server) createEnvironment(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	var req CreateEnvironmentRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := checkEnvName(req.Name); err != nil {
		return err
	}
	env, err := s.store.CreateEnvironment(r.Context(), p.OrgID, req.Name)
	if errors.Is(err, store.ErrConflict) {
		return apiErr(errcode.EnvironmentExists, "environment %q already exists", req.Name)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/v1/environments/"+env.Name)
	writeJSON(w, http.StatusCreated, Environment{Name: env.Name, CreatedAt: env.CreatedAt, State: connect.StateDisconnected})
	return nil
}

func (s *server) listEnvironments(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	envs, err := s.store.ListEnvironments(r.Context(), p.OrgID)
	if err != nil {
		return err
	}
	out := EnvironmentList{Environments: make([]Environment, 0, len(envs))}
	for _, e := range envs {
		st, err := s.pn.Status(r.Context(), p.OrgID, e.Name)
		if err != nil {
			return err
		}
		out.Environments = append(out.Environments, Environment{Name: e.Name, CreatedAt: e.CreatedAt, State: st.State})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *server) getEnvironment(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	env, err := s.orgEnv(r, p)
	if err != nil {
		return err
	}
	name := env.Name
	st, err := s.pn.Status(r.Context(), p.OrgID, name)
	if err != nil {
		return notFound(err, name)
	}
	writeJSON(w, http.StatusOK, Environment{Name: env.Name, CreatedAt: env.CreatedAt, State: st.State, PrivateNetwork: &st})
	return nil
}

func (s *server) deleteEnvironment(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	env, err := s.orgEnv(r, p)
	if err != nil {
		return err
	}
	name := env.Name
	err = s.store.DeleteEnvironment(r.Context(), p.OrgID, env.ID)
	if errors.Is(err, store.ErrConflict) {
		return apiErr(errcode.EnvironmentConnected, "environment %q is still connected to a tailnet; disconnect it first (DELETE /v1/environments/%s/private-network), so its policy entries and OAuth client are removed", name, name)
	}
	if err != nil {
		return notFound(err, name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// connect is PUT .../private-network. The Tailscale API token goes to the
// PrivateNetwork and nowhere else; every error is redacted against it.
func (s *server) connect(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	env, err := s.orgEnv(r, p)
	if err != nil {
		return err
	}
	name := env.Name
	var req ConnectRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := checkAPIToken(req.APIToken); err != nil {
		return err
	}
	if len(req.Targets) == 0 {
		return apiErr(errcode.BadInput, `targets is empty: give at least one "host:port" the environment must reach`)
	}
	ctx, cancel := s.operationContext(r)
	defer cancel()
	creq := connect.Request{OrgID: p.OrgID, Env: name, APIToken: req.APIToken, Targets: req.Targets}
	if req.Control != nil {
		creq.Control = *req.Control
	}
	res, err := s.pn.Connect(ctx, creq)
	if err != nil {
		s.writeError(w, r, err, req.APIToken)
		return nil
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}

func (s *server) status(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	name, err := envName(r)
	if err != nil {
		return err
	}
	st, err := s.pn.Status(r.Context(), p.OrgID, name)
	if err != nil {
		return notFound(err, name)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

func (s *server) verify(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	env, err := s.orgEnv(r, p)
	if err != nil {
		return err
	}
	name := env.Name
	ctx, cancel := s.operationContext(r)
	defer cancel()
	v, err := s.pn.Verify(ctx, p.OrgID, name)
	if err != nil {
		return notFound(err, name)
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (s *server) disconnect(w http.ResponseWriter, r *http.Request, p store.Principal) error {
	env, err := s.orgEnv(r, p)
	if err != nil {
		return err
	}
	name := env.Name
	var req DisconnectRequest
	if err := decodeBody(w, r, &req); err != nil {
		return err
	}
	if err := checkAPIToken(req.APIToken); err != nil {
		return err
	}
	ctx, cancel := s.operationContext(r)
	defer cancel()
	if err := s.pn.Disconnect(ctx, p.OrgID, name, req.APIToken); err != nil {
		s.writeError(w, r, err, req.APIToken)
		return nil
	}
	st, err := s.pn.Status(r.Context(), p.OrgID, name)
	if err != nil {
		return notFound(err, name)
	}
	writeJSON(w, http.StatusOK, st)
	return nil
}

// operationContext is the context for connect, verify and disconnect. It
// is not cancelled when the client goes away: stopping a policy write or
// its rollback halfway would leave the tailnet in a state nobody asked
// for. It is bounded by the operation timeout instead.
func (s *server) operationContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), s.opTimeout)
}

// checkAPIToken refuses a Tailscale API token that cannot be one (empty,
// too long, or with characters an HTTP header cannot carry) before it is
// sent anywhere. Whether Tailscale accepts it is for Tailscale to say.
func checkAPIToken(tok string) error {
	if tok == "" {
		return apiErr(errcode.BadInput, "api_token is required: a one-time Tailscale API access token (tskey-api-...)")
	}
	if len(tok) > 512 || strings.IndexFunc(tok, func(c rune) bool { return c <= ' ' || c > '~' }) >= 0 {
		return apiErr(errcode.BadInput, "api_token is malformed: a Tailscale API access token (tskey-api-...) is one line of printable ASCII without spaces")
	}
	return nil
}

// notFound words a missing environment for the answer; other errors pass.
func notFound(err error, name string) error {
	if errors.Is(err, store.ErrNotFound) {
		return &Error{Code: errcode.NotFound, Message: "environment \"" + name + "\" not found", cause: err}
	}
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Code == "not_found" {
		return &Error{Code: errcode.NotFound, Message: "environment \"" + name + "\" not found", cause: err}
	}
	return err
}
