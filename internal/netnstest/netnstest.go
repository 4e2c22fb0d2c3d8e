// Package netnstest builds test hosts out of Linux network namespaces: a
// namespace per host, veth links between them, commands run inside, and a
// packet capture on a namespace's interface that records every frame, so
// a test can prove what left a host and what did not.
//
// It needs root (CI runs as root) and iproute2's ip; Require skips with a
// clear message elsewhere.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
)

// Require skips the test where network namespaces cannot be made: not
// Linux, not root, or no ip command.
func Require(t testing.TB) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("skipping: network namespaces exist only on Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating network namespaces needs root (CI runs as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: iproute2's ip is not installed")
	}
}

// NS is one named network namespace.
type NS struct {
	Name string
}

// New creates a namespace with loopback up and removes it when the test
// ends.
func New(t testing.TB, prefix string) *NS {
	t.Helper()
	b := make([]byte, 3)
	rand.Read(b)
	ns := &NS{Name: prefix + "-" + hex.EncodeToString(b)}
	mustIP(t, "netns", "add", ns.Name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns.Name).Run() })
	ns.MustRun(t, "ip", "link", "set", "lo", "up")
	// No router solicitations or autoconfiguration: a quiet link makes a
	// capture readable.
	ns.MustRun(t, "sysctl", "-q", "-w", "net.ipv6.conf.all.accept_ra=0", "net.ipv6.conf.default.accept_ra=0",
		"net.ipv6.conf.all.router_solicitations=0", "net.ipv6.conf.default.router_solicitations=0")
	return ns
}

// Command returns cmd to run argv inside the namespace.
func (ns *NS) Command(argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name}, argv...)...)
}

// MustRun runs argv inside the namespace and fails the test if it fails.
func (ns *NS) MustRun(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := ns.Command(argv...).CombinedOutput()
	if err != nil {
		t.Fatalf("in %s: %s: %v\n%s", ns.Name, strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Link connects a and b with a veth pair named ifA (in a) and ifB (in
// b), addresses each end with the CIDRs given (IPv4 or IPv6, without
// duplicate address detection) and brings both up.
func Link(t testing.TB, a *NS, ifA string, addrsA []string, b *NS, ifB string, addrsB []string) {
	t.Helper()
	tmpA, tmpB := "tgv"+randHex(4), "tgv"+randHex(4)
	mustIP(t, "link", "add", tmpA, "type", "veth", "peer", "name", tmpB)
	mustIP(t, "link", "set", tmpA, "netns", a.Name, "name", ifA)
	mustIP(t, "link", "set", tmpB, "netns", b.Name, "name", ifB)
	for _, end := range []struct {
		ns    *NS
		ifc   string
		addrs []string
	}{{a, ifA, addrsA}, {b, ifB, addrsB}} {
		for _, addr := range end.addrs {
			args := []string{"ip", "addr", "add", addr, "dev", end.ifc}
			if strings.Contains(addr, ":") {
				args = append(args, "nodad")
			}
			end.ns.MustRun(t, args...)
		}
		end.ns.MustRun(t, "ip", "link", "set", end.ifc, "up")
	}
}

func mustIP(t testing.TB, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func randHex(n int) string {
	b := make([]byte, n/2)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// String names the namespace for messages.
func (ns *NS) String() string { return fmt.Sprintf("netns %s", ns.Name) }
