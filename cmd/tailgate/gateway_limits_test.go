package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maxRSS is the peak resident memory of a finished subprocess, in bytes.
func maxRSS(t *testing.T, p *subprocess) int64 {
	t.Helper()
	ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Skip("no rusage on this platform")
	}
	return ru.Maxrss << 10 // Linux reports KiB
}

// YAML bombs given to `tailgate gateway --validate-only` (as the attacker
// probe did) are refused with the limit named, and the process's peak
// memory stays within 50 MB of loading a tiny valid config. Before the
// limits, the 741-byte alias bomb took 100 s and 4 GB here.
func TestGatewayValidateOnlyRefusesYAMLBombsInBoundedMemory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", "binds:\n- port: 3000\n  listeners:\n  - routes:\n    - backends: [{host: \"127.0.0.1:1\"}]\n")
	run := func(args ...string) (int, string, int64) {
		p := startTailgate(t, nil, append([]string{"gateway"}, args...)...)
		code := p.wait(t, 60*time.Second)
		return code, p.output(), maxRSS(t, p)
	}
	code, out, base := run("-f", good, "--validate-only")
	if code != 0 || !strings.Contains(out, "good.yaml: ok") {
		t.Fatalf("valid config: exit %d\n%s", code, out)
	}

	refs := func(name string) string { return strings.Repeat(", *"+name, 29) }
	aliases := write("aliases.yaml", fmt.Sprintf("binds: [&b {port: 3000, listeners: [&l {protocol: HTTP, routes: [&r {matches: [&m {headers: [&h {name: x, value: {exact: y}}%s]}%s], backends: [{host: \"a:1\"}]}%s]}%s]}%s]\n",
		refs("h"), refs("m"), refs("r"), refs("l"), refs("b")))
	deep := write("deep.yaml", "binds:\n- port: 1\n  listeners: "+strings.Repeat("[", 9000)+strings.Repeat("]", 9000)+"\n")
	big := filepath.Join(dir, "big.yaml")
	if f, err := os.Create(big); err != nil {
		t.Fatal(err)
	} else {
		f.Truncate(200 << 20) // sparse: 200 MB that costs no disk
		f.Close()
	}
	for _, tc := range []struct {
		file, limit string
		args        []string
	}{
		{aliases, "alias expansion", nil},
		{deep, "nesting depth", nil},
		{big, "size", nil},
		{good, "size", []string{"--max-config-bytes", "50"}},
	} {
		code, out, rss := run(append([]string{"-f", tc.file, "--validate-only"}, tc.args...)...)
		if code != 1 || !strings.Contains(out, "exceeds the "+tc.limit+" limit") {
			t.Errorf("%s: exit %d, want 1 naming the %s limit:\n%s", filepath.Base(tc.file), code, tc.limit, out)
		}
		grew := rss - base
		t.Logf("%s: peak RSS %d MB (valid config: %d MB)", filepath.Base(tc.file), rss>>20, base>>20)
		if grew > 50<<20 {
			t.Errorf("%s: peak RSS %d MB above the valid config's, want under 50 MB", filepath.Base(tc.file), grew>>20)
		}
	}
	if code, out, _ := run("-f", good, "--validate-only", "--max-config-bytes", "0"); code != 2 {
		t.Errorf("--max-config-bytes 0: exit %d, want 2 (usage)\n%s", code, out)
	}
	if code, out, _ := run("-f", good, "--validate-only", "--gc-heap-floor-mib", "-1"); code != 2 || !strings.Contains(out, "gc-heap-floor-mib") {
		t.Errorf("--gc-heap-floor-mib -1: exit %d, want 2 (usage) naming the flag\n%s", code, out)
	}
}

func TestGatewayValidateOnlyPrintsRuleWarnings(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "warn.yaml")
	os.WriteFile(cfg, []byte(`binds:
- port: 3000
  listeners:
  - routes:
    - policies:
        authorization:
          rules:
          - deny: 'jwt.role != "admin"'
      backends: [{host: "127.0.0.1:1"}]
`), 0o600)
	p := startTailgate(t, nil, "gateway", "-f", cfg, "--validate-only")
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit %d, want 0 (warnings do not fail validation):\n%s", code, p.output())
	}
	out := p.output()
	for _, want := range []string{"warning: ", "warn.yaml:8: binds[0].listeners[0].routes[0].policies.authorization.rules[0]", "reads jwt.role", "warn.yaml: ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
