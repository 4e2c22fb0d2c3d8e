package api

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
)

// BenchmarkAuthenticatedStatus is the API's own cost per call: bearer
// token lookup (SHA-256 + SQLite), routing, the status read and JSON.
func BenchmarkAuthenticatedStatus(b *testing.B) {
	h := newHarness(b)
	h.createEnv(h.adminA, "staging")
	b.ResetTimer()
	for b.Loop() {
		if a := h.do("GET", "/v1/environments/staging/private-network", h.runnerA, nil); a.status != 200 {
			b.Fatalf("status %d", a.status)
		}
	}
}

// BenchmarkConnectAndVerifyThroughAPI times PUT private-network and POST
// verify end to end (API, connect.Service, sandbox tailnet), reporting
// p50/p95 of each.
func BenchmarkConnectAndVerifyThroughAPI(b *testing.B) {
	e := newE2E(b)
	tok := e.sb.NewAPIToken()
	var connects, verifies []time.Duration
	i := 0
	for b.Loop() {
		i++
		env := fmt.Sprintf("bench-%d", i)
		e.must(e.do("POST", "/v1/environments", e.admin, map[string]string{"name": env}), 201, "create")
		pn := "/v1/environments/" + env + "/private-network"
		start := time.Now()
		a := e.do("PUT", pn, e.admin, map[string]any{"api_token": tok, "targets": []string{sandbox.DemoAppName + ":80", sandbox.DeviceName + ":80"}})
		connects = append(connects, time.Since(start))
		if a.status != 200 {
			b.Fatalf("connect: %d %s", a.status, a.body)
		}
		start = time.Now()
		a = e.do("POST", pn+"/verify", e.admin, nil)
		verifies = append(verifies, time.Since(start))
		if a.status != 200 {
			b.Fatalf("verify: %d %s", a.status, a.body)
		}
		b.StopTimer()
		e.must(e.do("DELETE", pn, e.admin, map[string]any{"api_token": tok}), 200, "disconnect")
		b.StartTimer()
	}
	report := func(name string, d []time.Duration) {
		slices.Sort(d)
		b.ReportMetric(float64(d[len(d)/2].Microseconds())/1000, name+"-p50-ms")
		b.ReportMetric(float64(d[(len(d)*95+99)/100-1].Microseconds())/1000, name+"-p95-ms")
	}
	report("connect", connects)
	report("verify", verifies)
}
