package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/pkg/runner"

	"github.com/tailgate-dev/tailgate/internal/browser"
	"github.com/tailgate-dev/tailgate/internal/egress"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// testFlowThroughARun runs a flow in headless Chromium through a run of
// "web": the private app by its internal DNS name and by its subnet IP,
// text expected on both, screenshots of both; then a flow that goes to a
// public host fails with the proxy's reason in its report.
func testFlowThroughARun(t *testing.T, rs *runServer) {
	if _, err := os.Stat(browser.DefaultChromiumPath); err != nil {
		t.Skipf("no Chromium at %s", browser.DefaultChromiumPath)
	}
	dir := t.TempDir()
	flowFile := filepath.Join(dir, "smoke.yaml")
	os.WriteFile(flowFile, []byte(`name: private app smoke
steps:
  - goto: http://`+sandbox.DemoAppName+`/
  - expect_text: "`+sandbox.DemoAppText+`"
  - screenshot: by-name.png
  - goto: http://`+sandbox.DemoAppIP.String()+`/
  - expect_text: "`+sandbox.DemoAppText+`"
  - screenshot: by-ip.png
`), 0o644)
	out := filepath.Join(dir, "out")
	code, output := finishRun(t, rs.tailgate(t, nil, "flow", "run", flowFile, "--env", "web", "--out", out))
	if code != 0 {
		t.Fatalf("flow exit %d, want 0:\n%s", code, output)
	}
	wantAll(t, "flow summary", output, `Flow "private app smoke" passed`, "by-name.png", "by-ip.png", "report: "+filepath.Join(out, "report.json"))

	rep := readFlowReport(t, filepath.Join(out, "report.json"))
	if rep.Status != "passed" || len(rep.Steps) != 6 || rep.Run.ID == "" || rep.Run.Node == "" {
		t.Errorf("report: status %q, %d steps, run %+v", rep.Status, len(rep.Steps), rep.Run)
	}
	resolved := map[string]string{}
	for _, q := range rep.Requests {
		if q.Type == "Document" {
			resolved[q.Host] = q.Resolved
		}
	}
	for _, host := range []string{sandbox.DemoAppName, sandbox.DemoAppIP.String()} {
		if resolved[host] != sandbox.DemoAppIP.String() {
			t.Errorf("the page from %s has resolved address %q, want %s (requests: %+v)", host, resolved[host], sandbox.DemoAppIP, rep.Requests)
		}
	}
	// Everything the run's proxy saw is explained: the pages' requests, or
	// the browser's own, refused undialled. As root on Linux (CI) the
	// browser ran in the jail.
	if len(rep.Unattributed) != 0 {
		t.Errorf("unattributed proxy requests: %+v", rep.Unattributed)
	}
	for _, b := range rep.Background {
		if b.Source != browser.SourceBackground || b.Reason == "" || b.Host == sandbox.DemoAppName {
			t.Errorf("background entry %+v", b)
		}
	}
	if runtime.GOOS == "linux" && os.Geteuid() == 0 && !rep.Jail.On {
		t.Errorf("the flow's browser ran outside the jail: %+v", rep.Jail)
	}
	wantAll(t, "flow summary", output, "jail: ")
	for _, shot := range []string{"by-name.png", "by-ip.png"} {
		b, err := os.ReadFile(filepath.Join(out, shot))
		if err != nil || !bytes.HasPrefix(b, []byte("\x89PNG\r\n\x1a\n")) || len(b) < 1000 {
			t.Errorf("%s is not a PNG of the page (%d bytes, %v)", shot, len(b), err)
		}
	}

	// A public host: the step fails, the report says the proxy refused it.
	os.WriteFile(flowFile, []byte("name: leak\nsteps:\n  - goto: http://example.com/\n"), 0o644)
	out2 := filepath.Join(dir, "out2")
	code, output = finishRun(t, rs.tailgate(t, nil, "flow", "run", flowFile, "--env", "web", "--out", out2))
	if code != 1 {
		t.Errorf("flow to a public host: exit %d, want 1:\n%s", code, output)
	}
	wantAll(t, "failed flow summary", output, `Flow "leak" failed`, "REFUSED", "example.com", "not_a_target")
	rep = readFlowReport(t, filepath.Join(out2, "report.json"))
	refused := false
	for _, q := range rep.Requests {
		refused = refused || (q.Host == "example.com" && q.RefusalReason == string(egress.ReasonNotATarget))
	}
	if rep.Status != "failed" || !refused {
		t.Errorf("report of the failed flow: status %q, requests %+v", rep.Status, rep.Requests)
	}
}

func readFlowReport(t *testing.T, path string) FlowReport {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep FlowReport
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return rep
}

func TestMergeReportGivesRequestsTheProxysView(t *testing.T) {
	var rep browser.Report
	rep.Requests = []browser.Request{
		{URL: "http://app.internal.example/", Host: "app.internal.example", Port: 80, Status: 200, Type: "Document"},
		{URL: "https://example.com/", Host: "example.com", Port: 443, Failure: "net::ERR_TUNNEL_CONNECTION_FAILED"},
		{URL: "http://unseen.example/", Host: "unseen.example", Port: 80, Status: 200},
	}
	r := runWithEvents(
		egress.Event{Host: "app.internal.example", Port: 80, Resolved: sandbox.DemoAppIP, Status: 200},
		egress.Event{Host: "example.com", Port: 443, Refused: true, Reason: egress.ReasonNotATarget, ReasonText: "example.com:443 is not a target of this environment"},
	)
	m := mergeReport(rep, r)
	if len(m.Requests) != 3 || len(m.ProxyEvents) != 2 {
		t.Fatalf("merged: %+v", m)
	}
	if m.Requests[0].Resolved != sandbox.DemoAppIP.String() || m.Requests[0].RefusalReason != "" {
		t.Errorf("allowed request: %+v", m.Requests[0])
	}
	if m.Requests[1].RefusalReason != "not_a_target" || !strings.Contains(m.Requests[1].RefusalText, "not a target") {
		t.Errorf("refused request: %+v", m.Requests[1])
	}
	if m.Requests[2].Resolved != "" || m.Requests[2].RefusalReason != "" {
		t.Errorf("request the proxy never saw got its data: %+v", m.Requests[2])
	}
	b, _ := json.Marshal(m)
	if !strings.Contains(string(b), `"refusal_reason":"not_a_target"`) || strings.Count(string(b), `"requests"`) != 1 {
		t.Errorf("report JSON: %s", b)
	}
}

func runWithEvents(events ...egress.Event) runner.Report {
	return runner.Report{ID: "run_test", Env: "web", Events: events}
}
