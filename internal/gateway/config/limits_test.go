package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// aliasBomb is the shape of the probe's 1,099-byte config: each level of
// the config's own nesting (binds → listeners → routes → matches →
// headers) is a list of fanout aliases to the level below, so the file
// stands for fanout^5 header matches (30^5 ≈ 24 million) that the
// decoder, before limits, built one by one.
func aliasBomb(fanout int) string {
	refs := func(name string) string {
		return strings.Repeat(", *"+name, fanout-1)
	}
	return fmt.Sprintf("binds: [&b {port: 3000, listeners: [&l {protocol: HTTP, routes: [&r {matches: [&m {headers: [&h {name: x, value: {exact: y}}%s]}%s], backends: [{host: \"a:1\"}]}%s]}%s]}%s]\n",
		refs("h"), refs("m"), refs("r"), refs("l"), refs("b"))
}

// billionLaughs is the classic: nine levels of ten aliases to the level
// below, 10^9 strings, in a key the decoder would reject only after
// expanding it.
func billionLaughs() string {
	var b strings.Builder
	b.WriteString("lol0: &lol0 \"lol\"\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, "lol%d: &lol%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*lol%d, ", i-1), 10), ", "))
	}
	return b.String()
}

// refusedQuickly loads and requires a LimitError for limit, within 1 s
// (a deadline, not a timing) and under 50 MB of allocation.
func refusedQuickly(t *testing.T, limit string, load func() error) *LimitError {
	t.Helper()
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	done := make(chan error, 1)
	go func() { done <- load() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Second):
		t.Fatalf("%s: not refused within 1 s", limit)
	}
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 50<<20 {
		t.Errorf("%s: loading allocated %d MB, want under 50 MB", limit, grew>>20)
	} else {
		t.Logf("%s: refused after allocating %d KB: %v", limit, grew>>10, err)
	}
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrLimit) {
		t.Fatalf("%s: err = %v, want a LimitError", limit, err)
	}
	if le.Limit != limit || !strings.Contains(err.Error(), "exceeds the "+limit+" limit") {
		t.Fatalf("err = %v, want the %s limit named", err, limit)
	}
	return le
}

func TestAliasBombsAreRefused(t *testing.T) {
	bomb := aliasBomb(30)
	if len(bomb) > 1100 {
		t.Fatalf("bomb is %d bytes; the probe's was 1,099", len(bomb))
	}
	le := refusedQuickly(t, "alias expansion", func() error { _, err := Parse("bomb.yaml", []byte(bomb)); return err })
	if le.Line != 1 || le.Path == "" || !strings.Contains(le.Msg, "at alias *") {
		t.Errorf("error does not say where: %+v", le)
	}
	refusedQuickly(t, "alias expansion", func() error { _, err := Parse("laughs.yaml", []byte(billionLaughs())); return err })
}

func TestAliasCycleIsRefused(t *testing.T) {
	le := refusedQuickly(t, "alias expansion", func() error {
		_, err := Parse("cycle.yaml", []byte("binds:\n- &a [*a]\n"))
		return err
	})
	if le.Line != 2 || !strings.Contains(le.Msg, "inside its own anchor") {
		t.Errorf("err = %v", le)
	}
}

func TestDeepNestingIsRefused(t *testing.T) {
	// Past our limit: refused with the line and path of the node.
	deep := "binds:\n- port: 1\n  listeners: " + strings.Repeat("[", 100) + strings.Repeat("]", 100) + "\n"
	le := refusedQuickly(t, "nesting depth", func() error { _, err := Parse("deep.yaml", []byte(deep)); return err })
	if le.Line != 3 || !strings.HasPrefix(le.Path, "binds[0].listeners[0][0]") {
		t.Errorf("error does not say where: line %d path %q", le.Line, le.Path)
	}
	// Past yaml.v3's own parser limit (10,000): the same error kind.
	deeper := "binds: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n"
	refusedQuickly(t, "nesting depth", func() error { _, err := Parse("deeper.yaml", []byte(deeper)); return err })
	// Depth counts through aliases: each alias nests the anchor one deeper.
	var b strings.Builder
	b.WriteString("x0: &x0 []\n")
	for i := 1; i <= 70; i++ {
		fmt.Fprintf(&b, "x%d: &x%d [*x%d]\n", i, i, i-1)
	}
	le = refusedQuickly(t, "nesting depth", func() error { _, err := Parse("chain.yaml", []byte(b.String())); return err })
	if !strings.Contains(le.Msg, "through alias") {
		t.Errorf("err = %v, want it to name the alias", le)
	}
}

func TestOversizedFilesAreRefusedUnread(t *testing.T) {
	dir := t.TempDir()
	// 200 MB, sparse: refused from its size, without reading it.
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(200 << 20)
	f.Close()
	le := refusedQuickly(t, "size", func() error { _, err := Load(big); return err })
	if le.Max != DefaultMaxBytes || !strings.Contains(le.Error(), "big.yaml") || !strings.Contains(le.Error(), "--max-config-bytes") {
		t.Errorf("err = %v", le)
	}
	// A file whose size Stat does not know (a device, a FIFO, /proc)
	// is read only to one byte past the limit.
	if _, err := os.Stat("/dev/zero"); err == nil {
		refusedQuickly(t, "size", func() error { _, err := LoadWith("/dev/zero", Limits{MaxBytes: 1 << 20}); return err })
	}
	// Bytes handed to Parse are held to the same limit.
	refusedQuickly(t, "size", func() error {
		_, err := ParseWith("b.yaml", []byte(strings.Repeat("#\n", 600)), Limits{MaxBytes: 1000})
		return err
	})
	// A custom limit lets a large file through.
	ok := filepath.Join(dir, "ok.yaml")
	os.WriteFile(ok, []byte("binds: []\n"+strings.Repeat("# padding\n", 600_000)), 0o600)
	if _, err := Load(ok); !errors.Is(err, ErrLimit) {
		t.Fatalf("6 MB file under the default limit: err = %v", err)
	}
	if _, err := LoadWith(ok, Limits{MaxBytes: 8 << 20}); err != nil {
		t.Fatalf("6 MB file under an 8 MiB limit: %v", err)
	}
}

// Anchors for what they are for (one policy block shared by routes) stay
// well inside the limits.
func TestSharedAnchorsStillLoad(t *testing.T) {
	var b strings.Builder
	b.WriteString(`binds:
- port: 3000
  listeners:
  - protocol: HTTP
    routes:
`)
	for i := 0; i < 200; i++ {
		if i == 0 {
			b.WriteString(`    - name: r0
      policies: &shared
        authorization:
          rules:
          - 'request.method == "GET"'
          - deny: 'request.path.startsWith("/admin")'
        requestHeaderModifier: {set: {x-gw: tailgate}, remove: [cookie]}
        cors: {allowOrigins: ["https://a.example.com", "https://b.example.com"]}
      backends: [{host: "127.0.0.1:8080"}]
`)
			continue
		}
		fmt.Fprintf(&b, "    - name: r%d\n      policies: *shared\n      backends: [{host: \"127.0.0.1:8080\"}]\n", i)
	}
	f, err := Parse("shared.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(f.Binds[0].Listeners[0].Routes); n != 200 {
		t.Fatalf("%d routes", n)
	}
	if r := f.Binds[0].Listeners[0].Routes[199]; r.Policies == nil || r.Policies.Authorization == nil || len(r.Policies.Authorization.Rules) != 2 {
		t.Fatalf("the alias was not expanded: %+v", r.Policies)
	}
}
