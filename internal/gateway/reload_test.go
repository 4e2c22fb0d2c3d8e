package gateway

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func versionedConfig(port int, backend string, v int) string {
	return simpleConfig(port, backend, fmt.Sprintf(`
requestHeaderModifier:
  set: {x-gw: v%d}
authorization:
  rules:
  - 'request.method == "GET"'`, v), `
networkAuthorization:
  rules:
  - 'cidr("127.0.0.0/8").containsIP(source.address)'`)
}

func TestReloadUnderLoadDropsNoRequestAndBrokenFileChangesNothing(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, versionedConfig(port, hostOf(be), 0), port, func(o *Options) { o.ReloadInterval = 10 * time.Millisecond })

	var ok, failed atomic.Int64
	var firstFailure atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second} // keep-alive: connections outlive reloads
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(g.url("/load"))
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	waitServing := func(v int) {
		t.Helper()
		want := fmt.Sprintf("x-gw=v%d ", v)
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if strings.Contains(body(t, g.url("/probe")), want) {
				return
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Fatalf("config v%d never served", v)
	}
	for v := 1; v <= 20; v++ {
		writeFile(t, g.path, []byte(versionedConfig(port, hostOf(be), v)))
		waitServing(v)
	}
	// A broken file: the old config keeps serving, and the log says why.
	writeFile(t, g.path, []byte(strings.Replace(versionedConfig(port, hostOf(be), 21), `request.method == "GET"`, `request.methd == "GET"`, 1)))
	g.ops.WaitFor(t, "config reload failed")
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()

	if !strings.Contains(body(t, g.url("/after")), "x-gw=v20 ") {
		t.Fatal("a broken file replaced the running config")
	}
	if !strings.Contains(g.ops.String(), "request.methd does not exist") {
		t.Errorf("the reload error does not say what is wrong:\n%s", g.ops.String())
	}
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during 20 reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), firstFailure.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no load was generated")
	}
	t.Logf("%d requests during 20 reloads, none failed", ok.Load())
}

func TestReloadOpensAndClosesBinds(t *testing.T) {
	be := echoBackend(t)
	port, port2 := freePort(t), freePort(t)
	g := startGateway(t, simpleConfig(port, hostOf(be), "", ""), port)
	two := simpleConfig(port, hostOf(be), "", "") + strings.Replace(strings.SplitN(simpleConfig(port2, hostOf(be), "", ""), "\n", 2)[1], "name: default", "name: second", 1)
	writeFile(t, g.path, []byte(two))
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port2)); code != 200 {
		t.Fatalf("new bind: %d", code)
	}
	writeFile(t, g.path, []byte(simpleConfig(port2, hostOf(be), "", "")))
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := g.BindAddr(port); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("removed bind still listening")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestAdminMetricsReadinessAndRedactedDump(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	cfg := simpleConfig(port, hostOf(be), `
requestHeaderModifier:
  set: {authorization: "Bearer sk-live-123", x-gw: ok}
jwtAuth:
  mode: optional
  issuer: https://idp.example.com
  jwks: {url: "https://user:hunter2@idp.example.com/jwks?token=abc"}
authorization:
  rules: ['request.path != "/forbidden"']`, "")
	g := startGateway(t, cfg, port)
	get(t, g.url("/"))
	get(t, g.url("/forbidden"))
	admin := "http://" + g.AdminAddr()

	if code, b, _ := get(t, admin+"/healthz/ready"); code != 200 || !strings.Contains(b, "ready") {
		t.Fatalf("ready: %d %s", code, b)
	}
	_, metrics, _ := get(t, admin+"/metrics")
	for _, want := range []string{
		fmt.Sprintf(`tailgate_gateway_requests_total{bind="bind/%d",method="GET",route="default/app",status="200"} 1`, port),
		fmt.Sprintf(`tailgate_gateway_requests_total{bind="bind/%d",method="GET",route="default/app",status="403"} 1`, port),
		`tailgate_gateway_denials_total{policy="authorization",reason="no allow rule matched"} 1`,
		`tailgate_gateway_request_duration_seconds_bucket{bind=`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	_, dump, _ := get(t, admin+"/config_dump")
	for _, secret := range []string{"sk-live-123", "hunter2", "token=abc"} {
		if strings.Contains(dump, secret) {
			t.Errorf("config dump leaks %q:\n%s", secret, dump)
		}
	}
	var d ConfigDump
	if err := json.Unmarshal([]byte(dump), &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Binds) != 1 || d.Binds[0].Bind != fmt.Sprintf("bind/%d", port) || d.Config["binds"] == nil {
		t.Errorf("dump: %+v", d)
	}
	if !strings.Contains(dump, `"x-gw": "ok"`) {
		t.Errorf("dump hides non-secret values:\n%s", dump)
	}
	g.Close()
	if _, err := http.Get(admin + "/healthz/ready"); err == nil {
		t.Error("admin still answering after Close")
	}
}

func TestAccessLogJSON(t *testing.T) {
	be := echoBackend(t)
	port := freePort(t)
	g := startGateway(t, "config: {logging: {format: json}}\n"+simpleConfig(port, hostOf(be), "", ""), port)
	get(t, g.url("/j"))
	line := lineWith(g.access.WaitFor(t, `"path":"/j"`), `"path":"/j"`)
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil || m["msg"] != "request" || m["status"] != float64(200) {
		t.Fatalf("json access line %q: %v %v", line, m, err)
	}
	_ = os.Getpid
}

func TestConfigStatsAndReadinessAddrs(t *testing.T) {
	be := echoBackend(t)
	port, stats, ready := freePort(t), freePort(t), freePort(t)
	cfg := fmt.Sprintf("config:\n  adminAddr: 127.0.0.1:0\n  statsAddr: 127.0.0.1:%d\n  readinessAddr: 127.0.0.1:%d\n", stats, ready) + simpleConfig(port, hostOf(be), "", "")
	startGateway(t, cfg, port, func(o *Options) { o.AdminAddr = "" })
	if code, b, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", stats)); code != 200 || !strings.Contains(b, "go_goroutines") {
		t.Errorf("statsAddr /metrics: %d", code)
	}
	if code, _, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/healthz/ready", ready)); code != 200 {
		t.Errorf("readinessAddr /healthz/ready: %d", code)
	}
	if code, _, _ := get(t, fmt.Sprintf("http://127.0.0.1:%d/config_dump", stats)); code != 404 {
		t.Errorf("statsAddr serves more than metrics: %d", code)
	}
}
