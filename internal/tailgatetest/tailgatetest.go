// Package tailgatetest builds tailgate's server side for tests, the way
// tailgate serve builds it: a SQLite store and a vault key in a temporary
// directory, an org "acme" with an admin and a runner token, another org
// with an admin (for tenancy checks), and the connect service against a
// sandbox tailnet, logging into a buffer tests can scan for secrets.
//
// It stops short of the run manager and the API handler, which tests in
// packages run and api build themselves in one line (those packages'
// internal tests could not import a package that imports them).
package tailgatetest

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
	"github.com/tailgate-dev/tailgate/internal/issuer"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/testlog"
	"github.com/tailgate-dev/tailgate/internal/tsapi"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

// Stack is one tailgate server's state and services.
type Stack struct {
	// Sandbox is the tailnet the services connect to.
	Sandbox *sandbox.Sandbox
	// Dir holds the database and the vault key.
	Dir    string
	DBPath string
	Store  *store.Store
	Vault  *vault.Keyring
	// Connect connects, verifies and disconnects on the sandbox. Tests may
	// set its hooks (NewAPIClient, say) before use.
	Connect *connect.Service
	// Logs is everything the services logged, as JSON lines.
	Logs *testlog.Buffer
	// Org is org "acme"; Admin and Runner its tokens.
	Org           string
	Admin, Runner string
	// OtherOrg is a second org; OtherAdmin its admin token.
	OtherOrg, OtherAdmin string

	mu      sync.Mutex
	secrets []string
}

// New builds a Stack on sb (a shared sandbox, typically
// sandboxtest.Shared(t)). Everything is closed when the test ends.
func New(t testing.TB, sb *sandbox.Sandbox) *Stack {
	t.Helper()
	return NewOn(t, sb, "")
}

// NewOn is New on the database dsn names (a postgres:// URL, say, from
// pgtest.NewDatabase); "" is a SQLite file in Dir. Replicas of one
// tailgate open the same database again with [Stack.Replica].
func NewOn(t testing.TB, sb *sandbox.Sandbox, dsn string) *Stack {
	t.Helper()
	ctx := context.Background()
	s := &Stack{Sandbox: sb, Dir: t.TempDir(), Logs: &testlog.Buffer{}}
	s.DBPath = filepath.Join(s.Dir, "tailgate.db")
	if dsn != "" {
		s.DBPath = dsn
	}
	st, err := store.Open(ctx, s.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	kr, err := vault.LoadOrCreateKeyFile(filepath.Join(s.Dir, "tailgate.key"))
	if err != nil {
		t.Fatal(err)
	}
	s.Store, s.Vault = st, kr
	org, err := st.CreateOrg(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	other, err := st.CreateOrg(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	s.Org, s.OtherOrg = org.ID, other.ID
	for _, tok := range []struct {
		dst       *string
		org, name string
		role      store.Role
	}{
		{&s.Admin, org.ID, "admin", store.RoleAdmin},
		{&s.Runner, org.ID, "ci", store.RoleRunner},
		{&s.OtherAdmin, other.ID, "admin", store.RoleAdmin},
	} {
		if *tok.dst, _, err = st.CreateAPIToken(ctx, tok.org, tok.name, tok.role); err != nil {
			t.Fatal(err)
		}
	}
	s.Connect = &connect.Service{
		Store: st, Vault: kr, Logger: s.Logger(),
		Outbound: outbound.AllowLoopback(),
	}
	if sb != nil {
		s.Connect.APIBaseURL, s.Connect.ControlURL = sb.APIURL(), sb.ControlURL()
	}
	return s
}

// Federate makes the stack's connect service an OIDC issuer at url, so
// that connect creates federated identities on the sandbox. The caller
// serves the issuer's documents there: the tailgate API built with
// api.Options{Issuer: iss}, or FederateOnLoopback's own server.
func (s *Stack) Federate(url string) *issuer.Issuer {
	iss := &issuer.Issuer{URL: url, Keys: s.Store, Vault: s.Vault}
	s.Connect.Issuer = iss
	return iss
}

// FederateOnLoopback serves the issuer alone (the handler the API mounts)
// on loopback and federates the stack with it, for tests below the API.
func (s *Stack) FederateOnLoopback(t testing.TB) *issuer.Issuer {
	srv := httptest.NewUnstartedServer(nil)
	iss := s.Federate("http://" + srv.Listener.Addr().String())
	srv.Config.Handler = iss.Handler()
	srv.Start()
	t.Cleanup(srv.Close)
	return iss
}

// Replica is another tailgate process on s's database: its own store
// connection and connect service, the same vault key, orgs and tokens.
// It logs into s's Logs.
func (s *Stack) Replica(t testing.TB) *Stack {
	t.Helper()
	st, err := store.Open(context.Background(), s.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r := &Stack{Sandbox: s.Sandbox, Dir: s.Dir, DBPath: s.DBPath, Store: st, Vault: s.Vault, Logs: s.Logs,
		Org: s.Org, Admin: s.Admin, Runner: s.Runner, OtherOrg: s.OtherOrg, OtherAdmin: s.OtherAdmin}
	r.Connect = &connect.Service{Store: st, Vault: s.Vault, Logger: s.Logger(), Outbound: outbound.AllowLoopback(),
		APIBaseURL: s.Connect.APIBaseURL, ControlURL: s.Connect.ControlURL, Issuer: s.Connect.Issuer}
	return r
}

// Logger logs into Logs, at debug level, as JSON.
func (s *Stack) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Env creates environment name in Org.
func (s *Stack) Env(t testing.TB, name string) store.Environment {
	t.Helper()
	e, err := s.Store.CreateEnvironment(context.Background(), s.Org, name)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// ConnectEnv creates environment name and connects it to targets with a
// fresh sandbox API token; it is disconnected when the test ends.
func (s *Stack) ConnectEnv(t testing.TB, name string, targets ...string) connect.Result {
	t.Helper()
	s.Env(t, name)
	token := s.Sandbox.NewAPIToken()
	res, err := s.Connect.Connect(Ctx(t, 2*time.Minute), connect.Request{OrgID: s.Org, Env: name, APIToken: token, Targets: targets})
	if err != nil {
		t.Fatalf("connect %s: %v", name, err)
	}
	t.Cleanup(func() { s.Connect.Disconnect(context.Background(), s.Org, name, token) })
	return res
}

// ConnectHeadscaleEnv creates environment name and connects it to targets
// on headscale at url, with headscale's admin API key.
func (s *Stack) ConnectHeadscaleEnv(t testing.TB, url, apiKey, name string, targets ...string) connect.Result {
	t.Helper()
	s.Env(t, name)
	res, err := s.Connect.Connect(Ctx(t, 2*time.Minute), connect.Request{
		OrgID: s.Org, Env: name, APIToken: apiKey, Targets: targets,
		Control: controlplane.Control{Type: controlplane.Headscale, URL: url},
	})
	if err != nil {
		t.Fatalf("connect %s on headscale: %v", name, err)
	}
	return res
}

// Ctx is a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// CatchSecrets makes the connect service record every OAuth client secret
// the control plane hands it, so a test can look for them where they must
// never appear (answers, logs, database bytes).
func (s *Stack) CatchSecrets() {
	s.Connect.NewAPIClient = func(tok string) tsapi.ControlPlane {
		return &secretCatcher{ControlPlane: tsapi.NewWithAPIToken(s.Connect.APIBaseURL, tok), s: s}
	}
}

// Secrets are the OAuth client secrets caught so far.
func (s *Stack) Secrets() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.secrets...)
}

type secretCatcher struct {
	tsapi.ControlPlane
	s *Stack
}

func (c *secretCatcher) CreateOAuthClient(ctx context.Context, scopes, tags []string, desc string) (tsapi.OAuthClient, error) {
	oc, err := c.ControlPlane.CreateOAuthClient(ctx, scopes, tags, desc)
	if err == nil {
		c.s.mu.Lock()
		c.s.secrets = append(c.s.secrets, oc.Secret)
		c.s.mu.Unlock()
	}
	return oc, err
}
