package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

func init() {
	register(command{
		name:    "sandbox",
		summary: "run an embedded sandbox tailnet and print the settings tailgate serve needs to use it",
		run:     runSandbox,
	})
}

// runSandbox is tailgate sandbox: the demo's tailnet (control, DERP/STUN,
// the subnet router with its apps and internal DNS zone, the device, the
// Tailscale API stand-in) on its own, for integrators and for tests that
// span hosts. It prints serve's environment as shell assignments, then
// serves until SIGINT or SIGTERM.
func runSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("sandbox", stderr)
	listen := fs.String("listen", "127.0.0.1", "IPv4 `address` of this host to serve control, DERP/STUN and the API stand-in on (each on a free port); other hosts and namespaces join through it")
	verbose := fs.Bool("v", false, "print the sandbox's tailnet logs on stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"sandbox takes no arguments"}
	}
	addr, err := parseSandboxAddr(*listen)
	if err != nil {
		return err
	}
	opts := sandbox.Options{Addr: addr}
	if *verbose {
		opts.Logf = func(format string, a ...any) { fmt.Fprintf(stderr, format+"\n", a...) }
	}
	sb, err := sandbox.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer sb.Close()

	// One write, so a reader of a redirected stdout sees all of it or
	// nothing: the last line says it is complete.
	var b bytes.Buffer
	writeSandboxEnv(&b, sb, sb.NewAPIToken())
	fmt.Fprintln(&b, "# Use it (bash): set -a; . ./sandbox.env; set +a; tailgate serve   (with this output in sandbox.env)")
	fmt.Fprintln(&b, "#   echo \"$TAILSCALE_API_TOKEN\" | tailgate env connect staging --target "+sandbox.DemoAppName+":80")
	fmt.Fprintln(&b, "# ready: serving until interrupted (Ctrl-C)")
	if _, err := stdout.Write(b.Bytes()); err != nil {
		return err
	}

	<-ctx.Done()
	// A second signal stops at once, as in tailgate serve.
	signal.Reset(os.Interrupt, syscall.SIGTERM)
	fmt.Fprintln(stderr, "tailgate sandbox: stopping (its nodes leave the tailnet)")
	return nil
}

// parseSandboxAddr checks --listen: one IPv4 address, which the DERP map
// and the printed URLs can name.
func parseSandboxAddr(s string) (netip.Addr, error) {
	addr, err := netip.ParseAddr(s)
	switch {
	case err != nil && strings.Contains(s, ":"):
		return netip.Addr{}, usageError{fmt.Sprintf("--listen %q: give an address without a port (each server gets a free port, printed in the URLs)", s)}
	case err != nil:
		return netip.Addr{}, usageError{fmt.Sprintf("--listen %q is not an IP address", s)}
	case !addr.Is4() || addr.IsUnspecified():
		return netip.Addr{}, usageError{fmt.Sprintf("--listen %s: want an IPv4 address of this host other than 0.0.0.0 (nodes are told this one address to reach)", s)}
	}
	return addr, nil
}

// writeSandboxEnv writes what tailgate serve needs to use sb, as shell
// assignments one per line (TAILGATE_CONTROL_URL and
// TAILGATE_TAILSCALE_API, which serve reads, and TAILSCALE_API_TOKEN, an
// admin token of the API stand-in for tailgate env connect), then what
// the sandbox holds, as comments. The output is a valid shell script and
// an env file (docker --env-file, systemd EnvironmentFile).
//
// more are further assignments, name then value, written after those.
func writeSandboxEnv(w io.Writer, sb *sandbox.Sandbox, apiToken string, more ...string) {
	writeAssignment(w, "TAILGATE_CONTROL_URL", sb.ControlURL())
	writeAssignment(w, "TAILGATE_TAILSCALE_API", sb.APIURL())
	writeAssignment(w, "TAILSCALE_API_TOKEN", apiToken)
	for i := 0; i+1 < len(more); i += 2 {
		writeAssignment(w, more[i], more[i+1])
	}
	fmt.Fprintf(w, "# sandbox tailnet on %s: control %s, Tailscale API stand-in %s/api/v2\n", sb.Addr(), sb.ControlURL(), sb.APIURL())
	fmt.Fprintf(w, "# TAILSCALE_API_TOKEN is an admin token of the stand-in, valid 24 hours\n")
	fmt.Fprintf(w, "# subnet router %s (%s) advertises %s (approved) and %s (not approved)\n", sandbox.RouterName, sandbox.RouterIP, sandbox.ApprovedSubnet, sandbox.UnapprovedSubnet)
	fmt.Fprintf(w, "# internal DNS zone %s. answered by %s:53, through the tailnet only\n", sandbox.InternalZone, sandbox.RouterIP)
	fmt.Fprintf(w, "# private app: http://%s/ and https://%s/ (%s, behind the router)\n", sandbox.DemoAppName, sandbox.DemoAppName, sandbox.DemoAppIP)
	fmt.Fprintf(w, "# tailnet device: http://%s.%s/ (%s)\n", sandbox.DeviceName, sandbox.MagicDNSSuffix, sb.Device().IPv4())
}

// writeAssignment writes NAME=value, quoting value for a POSIX shell when
// it holds anything but plain characters.
func writeAssignment(w io.Writer, name, value string) {
	fmt.Fprintf(w, "%s=%s\n", name, shellQuote(value))
}

var shellPlain = regexp.MustCompile(`^[A-Za-z0-9_./:@%+,=-]*$`)

func shellQuote(s string) string {
	if s != "" && shellPlain.MatchString(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// startServeSandbox starts the embedded sandbox of tailgate serve
// --sandbox on loopback and points serve at it: its control and API stand
// in for --control-url and --tailscale-api (which may not be given too),
// and unless --db (or --key-file, --key-env) is given, state lives in a
// temporary directory, so every start is fresh and prints a first admin
// token. stop closes the sandbox and removes that directory.
func startServeSandbox(ctx context.Context, fs *flag.FlagSet, dbPath, keyFile, keyEnv, tsAPI, controlURL *string) (_ *sandbox.Sandbox, stop func(), err error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["tailscale-api"] || given["control-url"] {
		return nil, nil, usageError{"--sandbox brings its own control server and Tailscale API: drop --tailscale-api and --control-url"}
	}
	dir, err := os.MkdirTemp("", "tailgate-sandbox-")
	if err != nil {
		return nil, nil, err
	}
	if !given["db"] {
		*dbPath = filepath.Join(dir, "tailgate.db")
	}
	if !given["key-file"] && !given["key-env"] {
		*keyFile, *keyEnv = filepath.Join(dir, "tailgate.key"), ""
	}
	sb, err := sandbox.Start(ctx, sandbox.Options{})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	*tsAPI, *controlURL = sb.APIURL(), sb.ControlURL()
	return sb, func() { sb.Close(); os.RemoveAll(dir) }, nil
}

// writeServeSandbox is what tailgate serve --sandbox prints once it
// listens: the sandbox's settings as tailgate sandbox prints them, plus
// the API's URL and first admin token as TAILGATE_SERVER and
// TAILGATE_TOKEN, which the CLI reads, and commands to try.
func writeServeSandbox(w io.Writer, sb *sandbox.Sandbox, server, adminToken string) {
	var b bytes.Buffer
	more := []string{"TAILGATE_SERVER", server}
	if adminToken != "" {
		more = append(more, "TAILGATE_TOKEN", adminToken)
	}
	writeSandboxEnv(&b, sb, sb.NewAPIToken(), more...)
	if adminToken == "" {
		fmt.Fprintln(&b, "# TAILGATE_TOKEN: this database already had an org; use a token made for it (tailgate token create)")
	}
	tg := demoCommandName()
	fmt.Fprintln(&b, "# In another shell, set -a, paste the lines above, set +a; then try:")
	fmt.Fprintf(&b, "#   %s env create staging\n", tg)
	fmt.Fprintf(&b, "#   echo \"$TAILSCALE_API_TOKEN\" | %s env connect staging --target %s:80\n", tg, sandbox.DemoAppName)
	fmt.Fprintf(&b, "#   %s env verify staging\n", tg)
	fmt.Fprintf(&b, "#   %s run --env staging -- curl -s http://%s/\n", tg, sandbox.DemoAppName)
	w.Write(b.Bytes())
}
