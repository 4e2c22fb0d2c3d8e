package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tailgate-dev/tailgate/pkg/runner"

	"github.com/tailgate-dev/tailgate/internal/probe"

	"golang.org/x/term"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
)

func init() {
	register(command{
		name:    "env",
		summary: "manage environments on a tailgate server: create, list, connect, verify, status, disconnect, delete",
		run: func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
			return runEnv(ctx, args, os.Stdin, stdout, stderr)
		},
	})
}

const envUsage = `usage: tailgate env <command> [flags]

  create NAME                           create an environment
  list                                  list environments and their state
  connect NAME --target HOST:PORT ...   connect to the tailnet; the Tailscale API
                                        token is read from stdin or --api-token-file;
                                        --headscale URL connects a self-hosted
                                        headscale (the token is a headscale API key)
  verify NAME                           check every target through the tailnet
  status NAME                           granted CIDRs, warnings, last verification
  disconnect NAME                       remove the grants, revoke the credential
                                        (Tailscale API token from stdin or file)
  delete NAME                           delete a disconnected environment

Every command takes --server URL (env TAILGATE_SERVER, default
http://127.0.0.1:8080) and --json (print the server's answer as is). The
tailgate API token comes from the environment variable TAILGATE_TOKEN.`

// tokenFlag matches flags that would put the Tailscale API token on the
// command line, where ps, shell history and CI logs would keep it.
var tokenFlag = regexp.MustCompile(`^--?(api-token|api_token|apitoken|tailscale-token|token)(=|$)`)

func runEnv(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprintln(stderr, envUsage)
		if len(args) == 0 {
			return usageError{"missing command"}
		}
		return flag.ErrHelp
	}
	for _, a := range args {
		if tokenFlag.MatchString(a) {
			return usageError{"the Tailscale API token is never taken from the command line (ps, shell history and CI logs would keep it): pipe it on stdin or use --api-token-file PATH"}
		}
	}
	sub := args[0]
	fs := newFlagSet("env "+sub, stderr)
	server := fs.String("server", envOr("TAILGATE_SERVER", "http://127.0.0.1:8080"), "tailgate server `URL` (env TAILGATE_SERVER)")
	asJSON := fs.Bool("json", false, "print the server's JSON answer as is")
	var targets stringList
	var tokenFile, controlURL *string
	switch sub {
	case "connect":
		fs.Var(&targets, "target", "a `HOST:PORT` the environment must reach (repeat for more)")
		controlURL = fs.String("headscale", "", "connect a self-hosted headscale tailnet at this `URL`; the token on stdin is then a headscale API key")
		fallthrough
	case "disconnect":
		tokenFile = fs.String("api-token-file", "", "read the Tailscale API token from this `file` (\"-\" or unset: stdin)")
	case "create", "list", "verify", "status", "delete":
	default:
		fmt.Fprintln(stderr, envUsage)
		return usageError{fmt.Sprintf("unknown env command %q", sub)}
	}
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		return err
	}
	wantArgs := 1
	if sub == "list" {
		wantArgs = 0
	}
	if len(pos) != wantArgs {
		if wantArgs == 0 {
			return usageError{"list takes no arguments"}
		}
		return usageError{fmt.Sprintf("%s takes one environment name", sub)}
	}
	c, err := newAPIClient(*server)
	if err != nil {
		return err
	}
	out := &envOutput{w: stdout, json: *asJSON}
	switch sub {
	case "create":
		var env api.Environment
		raw, err := c.do(ctx, "POST", "/v1/environments", api.CreateEnvironmentRequest{Name: pos[0]}, &env)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) { fmt.Fprintf(w, "Created environment %s.\n", env.Name) })
	case "list":
		var list api.EnvironmentList
		raw, err := c.do(ctx, "GET", "/v1/environments", nil, &list)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) { printEnvList(w, list) })
	case "delete":
		raw, err := c.do(ctx, "DELETE", "/v1/environments/"+url.PathEscape(pos[0]), nil, nil)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) { fmt.Fprintf(w, "Deleted environment %s.\n", pos[0]) })
	case "status":
		var st connect.Status
		raw, err := c.do(ctx, "GET", envPath(pos[0]), nil, &st)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) { printStatus(w, st) })
	case "verify":
		if !*asJSON {
			fmt.Fprintf(stderr, "Verifying %s: joining the tailnet as an ephemeral node and checking every target...\n", pos[0])
		}
		var v connect.Verification
		raw, err := c.do(ctx, "POST", envPath(pos[0])+"/verify", nil, &v)
		if err != nil {
			return err
		}
		if err := out.print(raw, func(w io.Writer) { printVerification(w, v) }); err != nil {
			return err
		}
		if !v.OK {
			return errors.New("verification failed for at least one target")
		}
		return nil
	case "connect":
		if len(targets) == 0 {
			return usageError{"connect needs at least one --target HOST:PORT"}
		}
		tok, err := readAPIToken(*tokenFile, stdin, stderr)
		if err != nil {
			return err
		}
		var res connect.Result
		req := api.ConnectRequest{APIToken: tok, Targets: targets}
		if controlURL != nil && *controlURL != "" {
			req.Control = &controlplane.Control{Type: controlplane.Headscale, URL: *controlURL}
		}
		raw, err := c.do(ctx, "PUT", envPath(pos[0]), req, &res)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) { printConnect(w, res) })
	case "disconnect":
		tok, err := readAPIToken(*tokenFile, stdin, stderr)
		if err != nil {
			return err
		}
		raw, err := c.do(ctx, "DELETE", envPath(pos[0]), api.DisconnectRequest{APIToken: tok}, nil)
		if err != nil {
			return err
		}
		return out.print(raw, func(w io.Writer) {
			fmt.Fprintf(w, "Disconnected %s: its policy entries are removed and its OAuth client is revoked.\n", pos[0])
		})
	}
	return nil
}

func envPath(name string) string {
	return "/v1/environments/" + url.PathEscape(name) + "/private-network"
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// parseInterleaved parses flags that may come before, between or after
// the positional arguments ("connect staging --target a:1"), which the
// flag package alone stops at.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// readAPIToken reads the Tailscale API token from a file or stdin: never
// from argv. On a terminal it prompts and does not echo.
func readAPIToken(path string, stdin io.Reader, stderr io.Writer) (string, error) {
	var data []byte
	var err error
	from := "stdin"
	switch {
	case path != "" && path != "-":
		from = path
		data, err = os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read the Tailscale API token: %w", err)
		}
	default:
		if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			fmt.Fprint(stderr, "Tailscale API access token (tskey-api-..., not shown): ")
			data, err = term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(stderr)
		} else {
			data, err = io.ReadAll(io.LimitReader(stdin, 4096))
		}
		if err != nil {
			return "", fmt.Errorf("read the Tailscale API token from stdin: %w", err)
		}
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", usageError{fmt.Sprintf("no Tailscale API token on %s: pipe a one-time API access token in (e.g. tailgate env connect staging --target app:443 < token.txt) or use --api-token-file PATH", from)}
	}
	if strings.ContainsAny(tok, "\r\n") {
		return "", usageError{fmt.Sprintf("%s holds more than one line; it must hold only the Tailscale API token", from)}
	}
	return tok, nil
}

// apiClient calls a tailgate server with the token from TAILGATE_TOKEN,
// through the runner library's client (one client for the CLI and for
// platforms).
type apiClient struct{ *runner.Client }

func newAPIClient(server string) (*apiClient, error) {
	c, err := newOptionalTokenClient(server)
	if err != nil {
		return nil, err
	}
	if c.Token == "" {
		return nil, usageError{"set TAILGATE_TOKEN to a tailgate API token (tailgate serve prints one on first start; tailgate token create makes more)"}
	}
	return c, nil
}

// newOptionalTokenClient is newAPIClient for endpoints that may be public
// (the Network Allowlist): TAILGATE_TOKEN is sent when set.
func newOptionalTokenClient(server string) (*apiClient, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageError{fmt.Sprintf("--server must be an http(s) URL like http://127.0.0.1:8080, not %q", server)}
	}
	return newClient(strings.TrimRight(server, "/"), strings.TrimSpace(os.Getenv("TAILGATE_TOKEN"))), nil
}

// newClient is a client of server as token's holder. Connect and verify
// may take a minute: they edit the policy, join the tailnet and check
// every target.
func newClient(server, token string) *apiClient {
	return &apiClient{&runner.Client{Server: server, Token: token, HTTPClient: &http.Client{Timeout: 5 * time.Minute}}}
}

// do sends one request and decodes a 2xx answer into out (if not nil); it
// returns the raw answer for --json.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	return c.Call(ctx, method, path, body, out)
}

// envOutput prints either the raw JSON or a human-readable rendering.
type envOutput struct {
	w    io.Writer
	json bool
}

func (o *envOutput) print(raw []byte, human func(io.Writer)) error {
	if o.json {
		if len(bytes.TrimSpace(raw)) == 0 {
			raw = []byte("{}")
		}
		_, err := o.w.Write(append(bytes.TrimRight(raw, "\n"), '\n'))
		return err
	}
	bw := bufio.NewWriter(o.w)
	human(bw)
	return bw.Flush()
}

func table(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

func printEnvList(w io.Writer, list api.EnvironmentList) {
	if len(list.Environments) == 0 {
		fmt.Fprintln(w, "No environments yet: tailgate env create NAME")
		return
	}
	tw := table(w)
	fmt.Fprintln(tw, "NAME\tSTATE\tCREATED")
	for _, e := range list.Environments {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", e.Name, e.State, e.CreatedAt.Local().Format(time.DateTime))
	}
	tw.Flush()
}

func printConnect(w io.Writer, r connect.Result) {
	fmt.Fprintf(w, "Connected %s: its runners carry %s.\n", r.Env, r.Tag)
	if !r.PolicyWritten {
		fmt.Fprintln(w, "The policy already held exactly these grants; nothing was written.")
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Granted CIDRs:")
	for _, c := range r.CIDRs {
		fmt.Fprintf(w, "  %s\n", c)
	}
	fmt.Fprintln(w)
	tw := table(w)
	fmt.Fprintln(tw, "TARGET\tKIND\tGRANTED")
	for _, t := range r.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Target, t.Kind, strings.Join(t.Granted, ", "))
	}
	tw.Flush()
	printWarnings(w, r.Warnings)
	switch r.Credential {
	case controlplane.FederatedIdentity:
		fmt.Fprintf(w, "\nFederated identity %s holds the credential: tailgate signs short-lived ID tokens for it and stores no secret.\n", r.OAuthClientID)
	case controlplane.PreAuthKey:
		fmt.Fprintf(w, "\nPre-auth key %s is the credential (stored encrypted; never shown; never leaves the server).\n", r.OAuthClientID)
	default:
		fmt.Fprintf(w, "\nOAuth client %s holds the credential (stored encrypted; never shown).\n", r.OAuthClientID)
	}
	fmt.Fprintf(w, "Next: tailgate env verify %s\n", r.Env)
}

func printWarnings(w io.Writer, warnings []string) {
	if len(warnings) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Warnings:")
	for _, s := range warnings {
		fmt.Fprintf(w, "  ! %s\n", s)
	}
}

func printStatus(w io.Writer, st connect.Status) {
	tw := table(w)
	fmt.Fprintf(tw, "environment:\t%s\n", st.Env)
	fmt.Fprintf(tw, "state:\t%s\n", st.State)
	if st.State == connect.StateDisconnected {
		tw.Flush()
		fmt.Fprintf(w, "\nConnect it: tailgate env connect %s --target HOST:PORT < token.txt\n", st.Env)
		return
	}
	fmt.Fprintf(tw, "tag:\t%s\n", st.Tag)
	if st.ConnectedAt != nil {
		fmt.Fprintf(tw, "connected at:\t%s\n", st.ConnectedAt.Local().Format(time.DateTime))
	}
	fmt.Fprintf(tw, "targets:\t%s\n", strings.Join(st.Targets, ", "))
	fmt.Fprintf(tw, "credential:\t%s %s\n", st.Credential, st.OAuthClientID)
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Granted CIDRs:")
	for _, c := range st.CIDRs {
		fmt.Fprintf(w, "  %s\n", c)
	}
	printWarnings(w, st.Warnings)
	fmt.Fprintln(w)
	if st.LastVerification == nil {
		fmt.Fprintf(w, "Not verified yet: tailgate env verify %s\n", st.Env)
		return
	}
	fmt.Fprintf(w, "Last verification, %s:\n", st.LastVerification.At.Local().Format(time.DateTime))
	printVerification(w, *st.LastVerification)
}

// printVerification prints the verification table: a row per target, a
// column per step (ok, FAIL, or - when the step did not run), the verdict
// and the hint.
func printVerification(w io.Writer, v connect.Verification) {
	tw := table(w)
	fmt.Fprintln(tw, "TARGET\tDNS\tTCP\tTLS\tHTTP\tVERDICT\tHINT")
	failed := 0
	for _, t := range v.Targets {
		if !t.OK {
			failed++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Target,
			stepCell(t, "dns"), stepCell(t, "tcp"), stepCell(t, "tls"), stepCell(t, "http"),
			t.Verdict, orDash(t.Hint))
	}
	tw.Flush()
	switch {
	case len(v.Targets) == 0:
		fmt.Fprintln(w, "No targets were checked.")
	case failed == 0:
		fmt.Fprintf(w, "All %d targets reachable through the tailnet", len(v.Targets))
		if v.Node != "" {
			fmt.Fprintf(w, " (node %s, joined in %.0f ms)", v.Node, v.JoinMS)
		}
		fmt.Fprintln(w, ".")
	default:
		fmt.Fprintf(w, "%d of %d targets failed.\n", failed, len(v.Targets))
	}
}

func stepCell(t probe.Result, name string) string {
	for _, s := range t.Steps {
		if s.Name != name {
			continue
		}
		switch {
		case !s.OK:
			return "FAIL"
		case name == "tls" && s.TLS == nil:
			return "none"
		case name == "tls" && s.TLS.SelfSigned:
			return "ok (self-signed)"
		case name == "http" && s.HTTPStatus != 0:
			return fmt.Sprint(s.HTTPStatus)
		}
		return "ok"
	}
	return "-"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
