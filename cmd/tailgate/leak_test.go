package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/netnstest"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// TestNothingLeavesTheRunnerHost runs tailgate demo, with its whole
// tailnet, run proxy and Chromium, inside a network namespace whose
// default route leads to a second namespace that captures every packet
// arriving. It then tries every way out it knows through the run, by curl
// and by a page in Chromium (fetch, images, WebRTC, HTTP/3), with the jail
// off and on. Pass: the private app is reached and no packet leaves the
// runner host, apart from Tailscale's own port-mapping probes and the
// link's housekeeping, which are counted and reported.
func TestNothingLeavesTheRunnerHost(t *testing.T) {
	netnstest.Require(t)
	needCommand(t, "curl")
	runner := netnstest.New(t, "tgrunner")
	edge := netnstest.New(t, "tgedge")
	// 198.18.0.0/15 (benchmarking) and 2001:db8::/32 (documentation) are
	// routed nowhere; the edge namespace answers nothing and forwards
	// nothing, so a packet that leaves the runner is captured and dies.
	netnstest.Link(t, runner, "eth0", []string{"198.18.0.2/24", "2001:db8:ffff::2/64"}, edge, "eth0", []string{"198.18.0.1/24", "2001:db8:ffff::1/64"})
	runner.MustRun(t, "ip", "route", "add", "default", "via", "198.18.0.1")
	runner.MustRun(t, "ip", "-6", "route", "add", "default", "via", "2001:db8:ffff::1")
	capture := netnstest.StartCapture(t, edge, "eth0")

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	demo := startProcess(t, runner.Command(os.Args[0], "demo"), nil)
	demo.waitLine(t, ctx, "press Ctrl-C to stop")
	out := demo.output()
	export := strings.Fields(strings.TrimPrefix(strings.TrimSpace(lineWith(out, "export TAILGATE_SERVER=")), "export "))
	m := regexp.MustCompile(`curl -x (http://127\.0\.0\.1:\d+) http://` + regexp.QuoteMeta(sandbox.DemoAppName)).FindStringSubmatch(out)
	if len(export) != 2 || m == nil {
		t.Fatalf("the demo did not print its proxy and API:\n%s", out)
	}
	proxy := m[1]
	api, err := url.Parse(strings.TrimPrefix(export[0], "TAILGATE_SERVER="))
	if err != nil {
		t.Fatal(err)
	}
	apiPort := api.Port()

	// Through the run's proxy, from the runner host, by curl.
	socks := strings.TrimPrefix(proxy, "http://")
	for _, a := range []struct {
		what string
		args []string
		want string // in curl's output (-w adds the status)
	}{
		{"the private app by its internal name", []string{"-x", proxy, "http://" + sandbox.DemoAppName + "/"}, sandbox.DemoAppText},
		{"off-target HTTP", []string{"-x", proxy, "http://example.com/"}, "status=403"},
		{"off-target CONNECT", []string{"-x", proxy, "https://example.com/"}, "exit=56"},
		{"off-target SOCKS5h", []string{"--socks5-hostname", socks, "http://example.com/"}, "exit=97"},
		{"tailgate's own API port on loopback", []string{"-x", proxy, "http://127.0.0.1:" + apiPort + "/v1/environments"}, "status=403"},
		{"the API port on IPv6 loopback", []string{"-x", proxy, "http://[::1]:" + apiPort + "/v1/environments"}, "status=403"},
		{"link-local cloud metadata", []string{"-x", proxy, "http://169.254.169.254/latest/meta-data/"}, "status=403"},
		{"an IPv6 literal", []string{"-x", proxy, "http://[2001:db8::7]/"}, "status=403"},
		{"a LAN address by CONNECT", []string{"-x", proxy, "https://192.0.2.1/"}, "exit=56"},
	} {
		script := `curl -sS --max-time 10 -w '\nstatus=%{http_code}\n' "$@"; echo "exit=$?"`
		cmdOut, _ := runner.Command(append([]string{"sh", "-c", script, "curl"}, a.args...)...).CombinedOutput()
		if !strings.Contains(string(cmdOut), a.want) {
			t.Errorf("%s: want %q in curl's output:\n%s", a.what, a.want, cmdOut)
		}
	}

	// A page in Chromium that tries everything, with the browser's own
	// switches as the only guard (--jail=off) and inside the jail.
	dir := t.TempDir()
	flowFile := filepath.Join(dir, "probe.yaml")
	os.WriteFile(flowFile, []byte(fmt.Sprintf(`name: leak probe
steps:
  - goto: http://%s%s?loopback_port=%s
  - expect_text: %q
  - screenshot: probe.png
`, sandbox.DemoAppName, sandbox.ProbePath, apiPort, sandbox.ProbeDone)), 0o644)
	if _, err := os.Stat(browser.DefaultChromiumPath); err != nil {
		t.Errorf("no Chromium at %s: the browser half of the proof did not run (CI installs it)", browser.DefaultChromiumPath)
	} else {
		for _, mode := range []string{"off", "required"} {
			outDir := filepath.Join(dir, "jail-"+mode)
			p := startProcess(t, runner.Command(os.Args[0], "flow", "run", flowFile, "--env", demoEnv, "--out", outDir, "--jail", mode), export)
			if code := p.wait(t, 2*time.Minute); code != 0 {
				t.Errorf("probe flow with --jail=%s exited %d:\n%s", mode, code, p.output())
				continue
			}
			rep := readFlowReport(t, filepath.Join(outDir, "report.json"))
			if len(rep.Unattributed) != 0 {
				t.Errorf("--jail=%s: unattributed proxy requests %+v", mode, rep.Unattributed)
			}
			if rep.Jail.On != (mode == "required") {
				t.Errorf("--jail=%s: report says jail %+v", mode, rep.Jail)
			}
			refused := map[string]bool{}
			for _, q := range rep.Requests {
				if q.RefusalReason != "" || q.Refusal != "" || q.Failure != "" {
					refused[q.Host] = true
				}
			}
			for _, host := range []string{"example.com", "169.254.169.254", "[2001:db8::7]", "203.0.113.7", "127.0.0.1", "[::1]"} {
				if !refused[host] && !refused[strings.Trim(host, "[]")] {
					t.Errorf("--jail=%s: the probe's request to %s is not in the report as refused: %+v", mode, host, rep.Requests)
				}
			}
			if dst := os.Getenv("TAILGATE_LEAK_SHOTS"); dst != "" {
				b, _ := os.ReadFile(filepath.Join(outDir, "probe.png"))
				os.WriteFile(filepath.Join(dst, "probe-jail-"+mode+".png"), b, 0o644)
			}
			t.Logf("--jail=%s: %d page requests, browser_background %+v", mode, len(rep.Requests), rep.Background)
		}
	}

	if err := demo.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := demo.wait(t, time.Minute); code != 0 {
		t.Errorf("demo exited %d:\n%s", code, demo.output())
	}
	// The control: one datagram sent on purpose from the runner host must
	// show up, or the capture proves nothing.
	runner.MustRun(t, "sh", "-c", "echo canary > /dev/udp/203.0.113.9/9 || true")
	if _, err := os.Stat("/bin/bash"); err == nil {
		runner.MustRun(t, "bash", "-c", "echo canary > /dev/udp/203.0.113.9/9")
	}
	time.Sleep(500 * time.Millisecond)
	capture.Stop()

	var chatter, portmap, control int
	var leaks []string
	for _, p := range capture.Packets() {
		switch {
		case p.Proto == "udp" && p.Dst.String() == "203.0.113.9" && p.DstPort == 9:
			control++
		case p.LinkChatter():
			chatter++
		case portMappingProbe(p):
			portmap++
		default:
			leaks = append(leaks, p.String())
		}
	}
	t.Logf("left the runner host: %d packets of Tailscale's port-mapping probes, %d of link housekeeping (ARP, neighbour discovery), %d others", portmap, chatter, len(leaks))
	if control == 0 {
		t.Errorf("the control datagram to 203.0.113.9:9 was not captured: the capture sees nothing")
	}
	if len(leaks) > 0 {
		t.Errorf("%d packets left the runner host:\n%s", len(leaks), strings.Join(leaks, "\n"))
	}
}

// portMappingProbe reports whether p is Tailscale's port mapper asking the
// default gateway for a mapping: NAT-PMP and PCP (UDP 5351, answers from
// 5350) and UPnP's SSDP discovery (UDP 1900, often multicast).
func portMappingProbe(p netnstest.Packet) bool {
	if p.Proto != "udp" {
		return false
	}
	switch p.DstPort {
	case 5351, 5350, 1900:
		return true
	}
	return false
}

func needCommand(t *testing.T, name string) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/" + name); err != nil {
		t.Skipf("skipping: %s is not installed (CI installs it)", name)
	}
}
