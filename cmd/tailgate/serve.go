package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/tailgate-dev/tailgate/internal/heapreturn"
	"github.com/tailgate-dev/tailgate/internal/issuer"
	"github.com/tailgate-dev/tailgate/internal/outbound"
	tgrun "github.com/tailgate-dev/tailgate/internal/run"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/store"
	"github.com/tailgate-dev/tailgate/internal/vault"
)

func init() {
	register(command{
		name:    "serve",
		summary: "run the tailgate API server (SQLite or PostgreSQL state, vault key, REST API under /v1); --sandbox on an embedded tailnet",
		run:     runServe,
	})
}

// Defaults of tailgate serve; each flag can also come from an environment
// variable, which the flag overrides.
const (
	defaultDB           = "tailgate.db"
	defaultKeyFile      = "tailgate.key"
	defaultListen       = "127.0.0.1:8080"
	defaultTailscaleAPI = "https://api.tailscale.com"
	defaultControlURL   = "https://controlplane.tailscale.com"
)

// dbFlagUsage describes --db (serve, token create).
const dbFlagUsage = "state database: a SQLite file `path`, or a PostgreSQL URL postgres://user@host:port/db?sslmode=... (password best in PGPASSWORD or a pgpass file) (env TAILGATE_DB)"

// envOr returns the environment variable name, or def when it is unset.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", stderr)
	dbPath := fs.String("db", envOr("TAILGATE_DB", defaultDB), dbFlagUsage)
	keyFile := fs.String("key-file", envOr("TAILGATE_KEY_FILE", defaultKeyFile), "vault key `file`, created with mode 0600 on first start (env TAILGATE_KEY_FILE)")
	keyEnv := fs.String("key-env", envOr("TAILGATE_KEY_ENV", ""), "read the vault keys from this environment variable `NAME` instead of a key file (base64, comma separated, active first)")
	listen := fs.String("listen", envOr("TAILGATE_LISTEN", defaultListen), "`address` to serve the API on (env TAILGATE_LISTEN)")
	tsAPI := fs.String("tailscale-api", envOr("TAILGATE_TAILSCALE_API", defaultTailscaleAPI), "Tailscale API base `URL` (env TAILGATE_TAILSCALE_API)")
	controlURL := fs.String("control-url", envOr("TAILGATE_CONTROL_URL", defaultControlURL), "coordination server `URL` verify nodes join (env TAILGATE_CONTROL_URL)")
	var envErr error
	runMaxLifetime := fs.Duration("run-max-lifetime", durationEnv("TAILGATE_RUN_MAX_LIFETIME", tgrun.DefaultMaxLifetime, &envErr), "longest a run may live, whatever its client asks (env TAILGATE_RUN_MAX_LIFETIME)")
	runLease := fs.Duration("run-lease", durationEnv("TAILGATE_RUN_LEASE", tgrun.DefaultLease, &envErr), "a run whose client sends no heartbeat for this long is ended by the sweeper (env TAILGATE_RUN_LEASE)")
	verifyEvery := fs.Duration("verify-every", durationEnv("TAILGATE_VERIFY_EVERY", time.Hour, &envErr), "re-verify each connected environment this often; 0 turns scheduled verification off (env TAILGATE_VERIFY_EVERY)")
	logFormat := fs.String("log-format", envOr("TAILGATE_LOG_FORMAT", "text"), "log format on stderr: text or json (env TAILGATE_LOG_FORMAT)")
	outAllow := fs.String("outbound-allow", envOr("TAILGATE_OUTBOUND_ALLOW", ""), "comma-separated `CIDRs` that calls to a tenant's URL (a self-hosted control) may reach although loopback or private, e.g. 127.0.0.0/8 (env TAILGATE_OUTBOUND_ALLOW)")
	metricsListen := fs.String("metrics-listen", envOr("TAILGATE_METRICS_LISTEN", ""), "`address` to serve Prometheus /metrics on, apart from the API and without a token (e.g. 127.0.0.1:9090); off when empty (env TAILGATE_METRICS_LISTEN)")
	withSandbox := fs.Bool("sandbox", false, "serve against an embedded sandbox tailnet in this process, to try every command offline (state in a temporary directory unless --db is given)")
	outDeny := fs.String("outbound-deny", envOr("TAILGATE_OUTBOUND_DENY", ""), "comma-separated `CIDRs` that calls to a tenant's URL may never reach; the longer prefix wins over --outbound-allow (env TAILGATE_OUTBOUND_DENY)")
	publicURL := fs.String("public-url", envOr("TAILGATE_PUBLIC_URL", ""), "tailgate's public https `URL`, as Tailscale reaches it: tailgate becomes an OIDC issuer there and connects environments with federated identities, storing no secret (env TAILGATE_PUBLIC_URL)")
	keyRotation := fs.Duration("signing-key-rotation", durationEnv("TAILGATE_SIGNING_KEY_ROTATION", issuer.DefaultRotation, &envErr), "rotate the OIDC signing key this often (with --public-url); 0 never rotates (env TAILGATE_SIGNING_KEY_ROTATION)")
	warmPool := fs.Int("warm-pool", intEnv("TAILGATE_WARM_POOL", 0, &envErr), "keep up to `N` nodes per connected environment joined and path-warmed ahead, each for one run on this server; 0 joins each run when it starts (env TAILGATE_WARM_POOL)")
	heapReturn := fs.Int("heap-return-mib", intEnv("TAILGATE_HEAP_RETURN_MIB", heapreturn.DefaultThreshold>>20, &envErr), "give memory the Go collector freed back to the system once this many `MiB` are kept (checked every 5s): every run's node otherwise makes the runtime keep it; 0 leaves it to the runtime (env TAILGATE_HEAP_RETURN_MIB)")
	egressFlags := addAllowlistFlags(fs, &envErr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"serve takes no arguments"}
	}
	if envErr != nil {
		return usageError{envErr.Error()}
	}
	if *runMaxLifetime <= 0 {
		return usageError{"--run-max-lifetime must be positive, e.g. 1h"}
	}
	if *runLease <= 0 {
		return usageError{"--run-lease must be positive, e.g. 30s"}
	}
	if *warmPool < 0 || *warmPool > maxWarmPool {
		return usageError{fmt.Sprintf("--warm-pool must be between 0 (off) and %d, not %d", maxWarmPool, *warmPool)}
	}
	if *heapReturn < 0 {
		return usageError{fmt.Sprintf("--heap-return-mib must be 0 (off) or positive, not %d", *heapReturn)}
	}
	if *verifyEvery < 0 {
		return usageError{"--verify-every must be 0 (off) or positive, e.g. 1h"}
	}
	if *publicURL != "" {
		if err := issuer.CheckURL(*publicURL); err != nil {
			return usageError{"--public-url: " + err.Error()}
		}
	}
	if *keyRotation < 0 {
		return usageError{"--signing-key-rotation must be 0 (never) or positive, e.g. 720h"}
	}
	allow, err := outbound.ParsePrefixes(*outAllow)
	if err != nil {
		return usageError{"--outbound-allow: " + err.Error()}
	}
	deny, err := outbound.ParsePrefixes(*outDeny)
	if err != nil {
		return usageError{"--outbound-deny: " + err.Error()}
	}
	policy := &outbound.Policy{Allow: allow, Deny: deny}
	egress, err := egressFlags.parse()
	if err != nil {
		return err
	}
	handler, err := logHandler(*logFormat, stderr)
	if err != nil {
		return err
	}
	log := slog.New(handler)

	var sb *sandbox.Sandbox
	if *withSandbox {
		var stopSandbox func()
		sb, stopSandbox, err = startServeSandbox(ctx, fs, dbPath, keyFile, keyEnv, tsAPI, controlURL)
		if err != nil {
			return err
		}
		defer stopSandbox()
	}
	var keyring *vault.Keyring
	if *keyEnv != "" {
		keyring, err = vault.KeyringFromEnv(*keyEnv)
	} else {
		keyring, err = vault.LoadOrCreateKeyFile(*keyFile)
	}
	if err != nil {
		return fmt.Errorf("vault key: %w", err)
	}
	st, err := store.Open(ctx, *dbPath)
	if err != nil {
		return err
	}
	defer st.Close()
	var sandboxAdmin string // --sandbox prints the first admin token with the sandbox's settings
	if sb != nil {
		sandboxAdmin, _, err = firstAdmin(ctx, st)
	} else {
		err = bootstrap(ctx, st, *dbPath, stdout)
	}
	if err != nil {
		return err
	}

	al, err := egress.service(ctx, st, keyring, policy, log)
	if err != nil {
		return err
	}
	stk, err := startStack(ctx, stackConfig{Store: st, DB: *dbPath, Vault: keyring, APIBaseURL: *tsAPI, ControlURL: *controlURL, Logger: log,
		RunMaxLifetime: *runMaxLifetime, RunLease: *runLease, WarmPool: *warmPool, VerifyEvery: *verifyEvery, Outbound: policy,
		PublicURL: *publicURL, SigningKeyRotation: *keyRotation, SigningKeyPrepublish: issuer.DefaultPrepublish,
		Allowlist: al, AllowlistNeedsToken: egress.needsToken})
	if err != nil {
		return err
	}
	defer stk.Close()
	if *heapReturn > 0 {
		go heapreturn.Run(ctx, uint64(*heapReturn)<<20)
	}
	var metricsAddr string
	if *metricsListen != "" {
		var stopMetrics func()
		if metricsAddr, stopMetrics, err = serveMetricsHTTP(*metricsListen, stk.Metrics, log); err != nil {
			return err
		}
		defer stopMetrics()
	}
	srv := &http.Server{
		Handler:           stk.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		// Connect and verify talk to Tailscale and join the tailnet; the
		// API bounds them at 3 minutes.
		WriteTimeout: 4 * time.Minute,
		IdleTimeout:  2 * time.Minute,
		ErrorLog:     slog.NewLogLogger(handler, slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *listen, err)
	}
	log.Info("tailgate serving", "addr", ln.Addr().String(), "db", store.RedactDSN(*dbPath), "tailscale_api", *tsAPI, "control_url", *controlURL, "vault_key", keyring.ActiveKeyID(),
		"public_url", *publicURL, "run_max_lifetime", runMaxLifetime.String(), "run_lease", runLease.String(), "warm_pool", *warmPool, "heap_return_mib", *heapReturn, "outbound_allow", *outAllow, "outbound_deny", *outDeny)
	if sb != nil {
		writeServeSandbox(stdout, sb, "http://"+ln.Addr().String(), sandboxAdmin)
	}
	fmt.Fprintf(stdout, "tailgate API listening on http://%s\n", ln.Addr())
	fmt.Fprintf(stdout, "web console on http://%s/console/ (sign in with an API token)\n", ln.Addr())
	if metricsAddr != "" {
		log.Info("serving metrics", "addr", metricsAddr)
		fmt.Fprintf(stdout, "Prometheus metrics on http://%s/metrics\n", metricsAddr)
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// SIGTERM or SIGINT: stop accepting, let requests in flight finish (a
	// connect must not stop between its policy write and its rollback).
	// A second signal ends the process at once (the default behaviour),
	// for an operator who will not wait.
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	log.Info("shutting down; waiting for requests in flight (signal again to stop at once)")
	sctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	stk.StopBackground()
	if n := stk.Runs.Open(); n > 0 {
		log.Info("ending open runs", "runs", n)
	}
	stk.Close()
	log.Info("stopped")
	return nil
}

// durationEnv returns the environment variable name as a duration, or def
// when it is unset; a value that is not a duration is reported in *errp
// (once flags are parsed, as a usage error naming the variable).
func durationEnv(name string, def time.Duration, errp *error) time.Duration {
	return parsedEnv(name, def, time.ParseDuration, "a duration (e.g. 30s, 1h)", errp)
}

// maxWarmPool bounds --warm-pool: every pool node is a tailnet node in
// this process, for every connected environment.
const maxWarmPool = 64

// intEnv is durationEnv for a whole number.
func intEnv(name string, def int, errp *error) int {
	return parsedEnv(name, def, strconv.Atoi, "a whole number", errp)
}

// parsedEnv returns the environment variable name parsed by parse, or
// def when it is unset; a value parse refuses is reported in *errp as not
// being what.
func parsedEnv[T any](name string, def T, parse func(string) (T, error), what string, errp *error) T {
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return def
	}
	x, err := parse(v)
	if err != nil {
		*errp = fmt.Errorf("%s=%q is not %s", name, v, what)
		return def
	}
	return x
}

// bootstrap gives a new installation its first org and admin token, and
// prints the token once: on first start, when the database has no org.
func bootstrap(ctx context.Context, st *store.Store, dbPath string, stdout io.Writer) error {
	token, org, err := firstAdmin(ctx, st)
	if err != nil || token == "" {
		return err
	}
	fmt.Fprintf(stdout, "First start: created org %q (%s) and an admin API token for it:\n\n", org.Name, org.ID)
	fmt.Fprintf(stdout, "    %s\n\n", token)
	fmt.Fprintln(stdout, "Save this token now: it is shown only once (tailgate keeps only its hash).")
	fmt.Fprintln(stdout, "Use it as TAILGATE_TOKEN for \"tailgate env\", or as \"Authorization: Bearer <token>\".")
	db := dbPath
	if store.IsPostgres(dbPath) {
		db = "'" + store.RedactDSN(dbPath) + "'"
	}
	fmt.Fprintf(stdout, "More tokens: tailgate token create --db %s --org default --role runner --name ci\n\n", db)
	return nil
}

// firstAdmin creates org "default" and an admin token for it when the
// database has no org, and returns the token ("" when there was an org).
func firstAdmin(ctx context.Context, st *store.Store) (string, store.Org, error) {
	// Replicas starting together on a new database: one of them creates
	// the org and its token, the others find it there.
	org, created, err := st.CreateFirstOrg(ctx, "default")
	if err != nil || !created {
		return "", store.Org{}, err
	}
	token, _, err := st.CreateAPIToken(ctx, org.ID, "first admin", store.RoleAdmin)
	if err != nil {
		return "", store.Org{}, fmt.Errorf("first start: %w", err)
	}
	return token, org, nil
}
