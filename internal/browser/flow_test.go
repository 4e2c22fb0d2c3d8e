package browser_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tailgate-dev/tailgate/internal/browser"
)

func TestParseReadsAllStepKinds(t *testing.T) {
	f, err := browser.Parse([]byte(`name: staging smoke
steps:
  - goto: http://app.internal.example/
  - expect_text: "Hello from the private app"
  - fill: {selector: "#q", value: "hi"}
  - click: "#go"
  - screenshot: shots/home.png
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []browser.Step{
		{Kind: browser.StepGoto, URL: "http://app.internal.example/", Line: 3},
		{Kind: browser.StepExpectText, Text: "Hello from the private app", Line: 4},
		{Kind: browser.StepFill, Selector: "#q", Value: "hi", Line: 5},
		{Kind: browser.StepClick, Selector: "#go", Line: 6},
		{Kind: browser.StepScreenshot, File: filepath.Join("shots", "home.png"), Line: 7},
	}
	if f.Name != "staging smoke" || len(f.Steps) != len(want) {
		t.Fatalf("flow = %+v", f)
	}
	for i := range want {
		if f.Steps[i] != want[i] {
			t.Errorf("step %d = %+v; want %+v", i+1, f.Steps[i], want[i])
		}
	}
}

func TestParseRejectsBadFlowsWithLineNumbers(t *testing.T) {
	cases := []struct{ name, yaml, want string }{
		{"unknown step", "steps:\n  - goto: http://a/\n  - gto: http://a/\n", `3: step 2: unknown step "gto"`},
		{"unknown top-level key", "name: x\nstep:\n  - goto: http://a/\n", `2: unknown key "step"`},
		{"unknown fill key", "steps:\n  - fill: {selector: '#q', valu: hi}\n", `2: step 1: unknown fill key "valu"`},
		{"fill without value", "steps:\n  - fill: {selector: '#q'}\n", "2: step 1: fill needs both selector and value"},
		{"two keys in a step", "steps:\n  - goto: http://a/\n    click: '#b'\n", "2: step 1 must be a mapping with exactly one of"},
		{"relative goto", "steps:\n  - goto: /path\n", "2: step 1: goto needs an absolute http or https URL"},
		{"file goto", "steps:\n  - goto: file:///etc/passwd\n", "goto needs an absolute http or https URL"},
		{"screenshot escaping", "steps:\n  - screenshot: ../../x.png\n", "must stay inside the output directory"},
		{"absolute screenshot", "steps:\n  - screenshot: /tmp/x.png\n", "must stay inside the output directory"},
		{"screenshot not png", "steps:\n  - screenshot: x.jpg\n", "must end in .png"},
		{"empty click", "steps:\n  - click: ''\n", "click needs a CSS selector"},
		{"no steps", "name: x\n", "flow has no steps"},
		{"empty", "", "flow is empty"},
		{"not yaml", "steps: [\n", "flow is not valid YAML"},
		{"steps not a list", "steps: goto\n", "1: steps must be a list"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := browser.Parse([]byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error %v; want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestLoadNamesFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "smoke.yaml")
	os.WriteFile(path, []byte("steps:\n  - goto: http://a/\n  - clik: '#b'\n"), 0o644)
	_, err := browser.Load(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":3: ") {
		t.Fatalf("Load error %v; want it to start with %s:3:", err, path)
	}
	if _, err := browser.Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("Load of a missing file succeeded")
	}
}
