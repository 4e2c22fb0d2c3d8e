package gateway

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// A reload that hits a load limit (a YAML bomb, a file too large, too
// deep) keeps the running config, says which limit, and costs little;
// the watcher keeps working afterwards.
func TestReloadPastALimitKeepsTheRunningConfig(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	const maxBytes = 64 << 10
	g := startGateway(t, versionedConfig(port, hostOf(be), 1), port, func(o *Options) {
		o.ReloadInterval = 10 * time.Millisecond
		o.MaxConfigBytes = maxBytes
	})
	if !strings.Contains(body(t, g.url("/")), "x-gw=v1 ") {
		t.Fatal("v1 not served")
	}
	refs := func(name string) string { return strings.Repeat(", *"+name, 29) }
	bomb := fmt.Sprintf("binds: [&b {port: %d, listeners: [&l {protocol: HTTP, routes: [&r {matches: [&m {headers: [&h {name: x, value: {exact: y}}%s]}%s], backends: [{host: %q}]}%s]}%s]}%s]\n",
		port, refs("h"), refs("m"), hostOf(be), refs("r"), refs("l"), refs("b"))
	for _, tc := range []struct {
		limit string
		file  string
	}{
		{"alias expansion", bomb},
		{"size", versionedConfig(port, hostOf(be), 2) + strings.Repeat("# padding\n", maxBytes/10+1)},
		{"nesting depth", versionedConfig(port, hostOf(be), 2) + "x: " + strings.Repeat("[", 200) + strings.Repeat("]", 200) + "\n"},
	} {
		before := strings.Count(g.ops.String(), "exceeds the "+tc.limit+" limit")
		var m0, m1 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		writeFile(t, g.path, []byte(tc.file))
		// The watcher sees the change and refuses it. It may first see the
		// file half written (an empty or cut file is refused too), so wait
		// for the refusal that names this limit.
		deadline := time.Now().Add(10 * time.Second)
		for strings.Count(g.ops.String(), "exceeds the "+tc.limit+" limit") == before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the watcher never reported the refused reload:\n%s", tc.limit, g.ops.String())
			}
			time.Sleep(5 * time.Millisecond)
		}
		runtime.ReadMemStats(&m1)
		if grew := m1.TotalAlloc - m0.TotalAlloc; grew > 50<<20 {
			t.Errorf("%s: refusing the reload allocated %d MB", tc.limit, grew>>20)
		}
		if ops := g.ops.String(); !strings.Contains(ops, "exceeds the "+tc.limit+" limit") {
			t.Errorf("%s: the log does not name the limit:\n%s", tc.limit, ops)
		}
		// Reload, called directly, says the same and changes nothing.
		start := time.Now()
		err := g.Reload()
		if !errors.Is(err, config.ErrLimit) || !strings.Contains(err.Error(), tc.limit) {
			t.Errorf("%s: Reload() = %v", tc.limit, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s: refusing took %v, want under 1 s", tc.limit, d)
		}
		if !strings.Contains(body(t, g.url("/")), "x-gw=v1 ") {
			t.Fatalf("%s: the refused file replaced the running config", tc.limit)
		}
	}
	// A good file afterwards is picked up as usual.
	writeFile(t, g.path, []byte(versionedConfig(port, hostOf(be), 3)))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(body(t, g.url("/")), "x-gw=v3 ") {
		if time.Now().After(deadline) {
			t.Fatal("a good file after refused ones was never loaded")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
