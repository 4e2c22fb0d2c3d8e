package jail_test

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/jail"
	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

// newJail returns a jail forwarding addrs, skipping where no jail is
// possible (not Linux, or a kernel without usable namespaces). CI runs as
// root on Linux, where it is always possible.
func newJail(t *testing.T, addrs ...netip.AddrPort) *jail.Jail {
	t.Helper()
	j, err := jail.New(jail.Options{Mode: jail.ModeRequired, Forward: addrs})
	if errors.Is(err, jail.ErrUnavailable) && (runtime.GOOS != "linux" || os.Geteuid() != 0) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	if !j.Status().On {
		t.Fatalf("status %+v; want on", j.Status())
	}
	return j
}

func addrOf(t *testing.T, s *httptest.Server) netip.AddrPort {
	t.Helper()
	return netip.MustParseAddrPort(s.Listener.Addr().String())
}

func server(t *testing.T, body string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, body) }))
	t.Cleanup(s.Close)
	return s
}

// jailed runs a shell script in j and returns its output and exit code.
func jailed(t *testing.T, j *jail.Jail, script string) (string, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := j.Wrap(cmd); err != nil {
		t.Fatal(err)
	}
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &ee):
		return out.String(), ee.ExitCode()
	}
	t.Fatalf("run %q: %v", script, err)
	return "", -1
}

func needTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("skipping: %s is not installed (CI installs it)", name)
	}
}

func TestJailReachesOnlyTheForwardedAddress(t *testing.T) {
	needTool(t, "curl")
	proxy := server(t, "through the proxy")
	other := server(t, "SHOULD-NOT-BE-REACHED")
	j := newJail(t, addrOf(t, proxy))

	out, code := jailed(t, j, "curl -sS --max-time 5 "+proxy.URL+"/")
	if code != 0 || out != "through the proxy" {
		t.Errorf("forwarded address: code %d, output %q", code, out)
	}
	// Another port on the host's loopback is the jail's own loopback,
	// where nothing listens.
	out, code = jailed(t, j, "curl -sS --max-time 5 "+other.URL+"/")
	if code == 0 || strings.Contains(out, "SHOULD-NOT-BE-REACHED") {
		t.Errorf("unforwarded loopback port: code %d, output %q", code, out)
	}
}

func TestJailHasNoRouteAndNoResolver(t *testing.T) {
	needTool(t, "getent")
	j := newJail(t)
	// No route: an address on this machine's LAN is unreachable at once,
	// not timed out.
	needTool(t, "bash")
	out, _ := jailed(t, j, `bash -c 'exec 3<>/dev/tcp/192.0.2.1/80' 2>&1; echo "rc=$?"`)
	if !strings.Contains(out, "Network is unreachable") || !strings.Contains(out, "rc=1") {
		t.Errorf("dial to 192.0.2.1 in the jail: %q", out)
	}
	routes, _ := jailed(t, j, "cat /proc/net/route /proc/net/ipv6_route")
	for _, line := range strings.Split(strings.TrimSpace(routes), "\n")[1:] {
		if strings.Contains(line, "lo") {
			continue
		}
		t.Errorf("route in the jail: %q", line)
	}
	// No resolver: getent fails for a public name (exit 2: not found)
	// while /etc/hosts still answers localhost.
	out, code := jailed(t, j, "getent hosts example.com")
	if code == 0 {
		t.Errorf("getent hosts example.com resolved in the jail: %q", out)
	}
	out, _ = jailed(t, j, "cat /etc/resolv.conf")
	if strings.Contains(out, "nameserver") {
		t.Errorf("the jail's resolv.conf names a server: %q", out)
	}
	if out, code = jailed(t, j, "getent hosts localhost"); code != 0 {
		t.Errorf("getent hosts localhost: code %d %q", code, out)
	}
}

func TestJailPassesExitStatusStdinAndFiles(t *testing.T) {
	j := newJail(t)
	if _, code := jailed(t, j, "exit 7"); code != 7 {
		t.Errorf("exit code %d; want 7", code)
	}
	// A signal that kills the command shows as 128+N, as shells report it.
	if _, code := jailed(t, j, "kill -TERM $$"); code != 128+int(syscall.SIGTERM) {
		t.Errorf("killed by SIGTERM: code %d", code)
	}
	// Stdin and an extra file (fd 3: how chromedp talks to Chromium) pass
	// through the keeper.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", `read line; echo "got $line" >&3`)
	cmd.Stdin = strings.NewReader("hello\n")
	cmd.ExtraFiles = []*os.File{w}
	if err := j.Wrap(cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	buf := make([]byte, 64)
	n, _ := r.Read(buf)
	if got := string(buf[:n]); got != "got hello\n" {
		t.Errorf("fd 3 got %q", got)
	}
	// The keeper's own variables do not reach the command.
	if out, _ := jailed(t, j, "env"); strings.Contains(out, "TAILGATE_JAIL") {
		t.Errorf("command environment carries the keeper's variables: %q", out)
	}
	if _, code := jailed(t, j, "exec /no/such/program"); code != 127 {
		t.Errorf("missing program: code %d; want 127", code)
	}
}

func TestJailRelayClosesWithTheJail(t *testing.T) {
	// A long-lived connection through the jail is cut when the jail is
	// closed, so nothing outlives the run.
	addr := netip.MustParseAddrPort(testtcp.Serve(t, func(c net.Conn) {
		defer c.Close()
		c.Write([]byte("hi\n"))
		c.Read(make([]byte, 1))
	}))
	needTool(t, "bash")
	j := newJail(t, addr)
	port := addr.Port()
	cmd := exec.Command("bash", "-c", fmt.Sprintf(`exec 3<>/dev/tcp/127.0.0.1/%d; head -1 <&3; cat <&3; echo closed`, port))
	var out bytes.Buffer
	cmd.Stdout = &out
	j.Wrap(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	j.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the command's connection outlived the jail")
	}
	if got := out.String(); got != "hi\nclosed\n" {
		t.Errorf("output %q", got)
	}
}

func TestRequiredRefusesANonLoopbackForward(t *testing.T) {
	_, err := jail.New(jail.Options{Mode: jail.ModeRequired, Forward: []netip.AddrPort{netip.MustParseAddrPort("192.0.2.1:3128")}})
	if err == nil || !strings.Contains(err.Error(), "not a loopback address") {
		t.Errorf("err %v", err)
	}
}

func TestOffLeavesTheCommandAlone(t *testing.T) {
	j, err := jail.New(jail.Options{Mode: jail.ModeOff})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/true")
	j.Wrap(cmd)
	if cmd.Path != "/bin/true" || j.Status().On || j.Status().Reason != "--jail=off" {
		t.Errorf("off: path %s status %+v", cmd.Path, j.Status())
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]jail.Mode{"": jail.ModeAuto, "auto": jail.ModeAuto, "Required": jail.ModeRequired, "off": jail.ModeOff} {
		if got, err := jail.ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := jail.ParseMode("strict"); err == nil || !strings.Contains(err.Error(), "want auto, required or off") {
		t.Errorf("ParseMode(strict): %v", err)
	}
}

// TestUnprivilegedJail runs the jail as an unprivileged user, through a
// user namespace, where the kernel allows it.
func TestUnprivilegedJail(t *testing.T) {
	if os.Geteuid() != 0 {
		// Already unprivileged: the other tests cover it.
		t.Skip("skipping: the other tests already run unprivileged")
	}
	needTool(t, "curl")
	// Copy this test binary where nobody may run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "tailgate-jail-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "jail.test")
	raw, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, raw, 0o755); err != nil {
		t.Fatal(err)
	}
	proxy := server(t, "unprivileged through the proxy")
	cmd := exec.Command(bin, "-test.run", "^TestHelperUnprivileged$", "-test.v")
	cmd.Env = append(os.Environ(), "TAILGATE_JAIL_TEST_PROXY="+proxy.Listener.Addr().String(), "TMPDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	os.Chmod(dir, 0o777)
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "SKIP") {
		t.Skipf("unprivileged user namespaces unavailable: %s", out)
	}
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("unprivileged jail: %v\n%s", err, out)
	}
}

// TestHelperUnprivileged is run by TestUnprivilegedJail as nobody.
func TestHelperUnprivileged(t *testing.T) {
	addr := os.Getenv("TAILGATE_JAIL_TEST_PROXY")
	if addr == "" {
		t.Skip("run by TestUnprivilegedJail")
	}
	if os.Geteuid() == 0 {
		t.Fatal("still root")
	}
	j, err := jail.New(jail.Options{Mode: jail.ModeRequired, Forward: []netip.AddrPort{netip.MustParseAddrPort(addr)}})
	if err != nil {
		t.Skipf("SKIP: %v", err)
	}
	defer j.Close()
	out, code := jailed(t, j, "curl -sS --max-time 5 http://"+addr+"/")
	if code != 0 || out != "unprivileged through the proxy" {
		t.Errorf("code %d output %q", code, out)
	}
	if out, code := jailed(t, j, "getent hosts example.com"); code == 0 {
		t.Errorf("resolved: %q", out)
	}
}
