package gateway

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/tailgate-dev/tailgate/internal/testtcp"
)

// BenchmarkFastFront is the fast front's cost a request, in-process and
// over loopback TCP, beside its floor: a bare fasthttp reverse proxy (a
// server whose handler is HostClient.Do, no routing, no log) in front of
// the same backend. Each leg sends the same GET with a bearer token over
// 8 keep-alive connections; the backend answers 1 KiB.
//
//	go test ./internal/gateway/ -run '^$' -bench FastFront -benchmem -benchtime 40000x -count 3
//
// allocs/op and B/op are the whole process's (client, backend and proxy),
// but the client and backend are fasthttp's and allocate nothing, so they
// are the proxy's. cpu-ns/op is the process's CPU time a request; the
// "x-raw" metric of a leg is its cpu-ns/op over the raw leg's, measured
// in the same benchmark run (legs take turns in blocks).
func BenchmarkFastFront(b *testing.B) {
	body := strings.Repeat("x", 1024)
	backend := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain")
		ctx.WriteString(body)
	}}
	beLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go backend.Serve(beLn)
	defer backend.Shutdown()
	beAddr := beLn.Addr().String()

	// The floor: fasthttp's own proxy.
	hc := &fasthttp.HostClient{Addr: beAddr, MaxConns: 1024}
	raw := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if err := hc.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
	}}
	rawLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go raw.Serve(rawLn)
	defer raw.Shutdown()

	dir := b.TempDir()
	token, policies, network := benchPolicies(b, dir)
	legs := []struct {
		name string
		addr string
	}{
		{"raw", rawLn.Addr().String()},
		{"bare", startFastGateway(b, dir, beAddr, "", "")},
		{"policies", startFastGateway(b, dir, beAddr, policies, network)},
	}
	for _, leg := range legs {
		b.Run(leg.name, func(b *testing.B) {
			send := fastBenchClient(b, leg.addr, token)
			b.ReportAllocs()
			cpu0 := processCPU(b)
			for b.Loop() {
				send()
			}
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
	b.Run("paired", func(b *testing.B) {
		sends := make([]func(), len(legs))
		for i, leg := range legs {
			sends[i] = fastBenchClient(b, leg.addr, token)
		}
		ns := inTurns(b, 200, sends...)
		for i, leg := range legs[1:] {
			b.ReportMetric(ns[i+1], leg.name+"-cpu-ns/req")
			b.ReportMetric(ns[i+1]/ns[0], leg.name+"-x-raw")
		}
		b.ReportMetric(ns[0], "raw-cpu-ns/req")
	})
}

// startFastGateway starts a gateway with one route to backend, its access
// log to a file (as a deployed gateway's), and returns its address.
func startFastGateway(b *testing.B, dir, backend, policies, frontend string) string {
	port := testtcp.FreePort(b)
	cfg := filepath.Join(dir, fmt.Sprintf("gw-%d.yaml", port))
	if err := os.WriteFile(cfg, []byte(simpleConfig(port, backend, policies, frontend)), 0o600); err != nil {
		b.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, fmt.Sprintf("access-%d.log", port)))
	if err != nil {
		b.Fatal(err)
	}
	g, err := New(Options{ConfigPath: cfg, BindHost: "127.0.0.1", AdminAddr: "off", AccessLog: logf,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ReloadInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	if err := g.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close(); logf.Close() })
	return fmt.Sprintf("127.0.0.1:%d", port)
}

// fastBenchClient returns a function that sends one GET to addr through
// a fasthttp client of 8 connections and checks the answer.
func fastBenchClient(b *testing.B, addr, token string) func() {
	c := &fasthttp.HostClient{Addr: addr, MaxConns: 8}
	req, resp := &fasthttp.Request{}, &fasthttp.Response{}
	req.SetRequestURI("http://" + addr + "/")
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("User-Agent", "bench")
	return func() {
		if err := c.Do(req, resp); err != nil {
			b.Fatal(err)
		}
		if resp.StatusCode() != 200 || len(resp.Body()) != 1024 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode(), len(resp.Body()))
		}
	}
}
