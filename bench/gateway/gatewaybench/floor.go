package main

import (
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/tailgate-dev/tailgate/internal/batchwrite"
)

// floor is the least a Go reverse proxy built on fasthttp does for a
// request, the gateway's floor on this harness: fasthttp's server hands
// the request as it was read to fasthttp's client and the answer back
// unchanged, and writes one access line (time, method, path, status,
// duration) through the same batching writer as the gateway's access log,
// since every proxy in run.sh logs each request. No routing, no policy,
// no header rewriting, no metrics. What the gateway's fast front costs
// beyond this is the gateway's own; what this costs beyond nginx is the
// price of Go and fasthttp here.
func floor(addr, backend, accessLog string) error {
	f, err := os.Create(accessLog)
	if err != nil {
		return err
	}
	log := batchwrite.New(f, 64<<10, 50*time.Millisecond) // the gateway's flush interval
	defer log.Close()
	upstream := &fasthttp.HostClient{Addr: backend, MaxConns: 1024}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		start := time.Now()
		if err := upstream.Do(&ctx.Request, &ctx.Response); err != nil {
			ctx.Error("bad gateway", fasthttp.StatusBadGateway)
		}
		bp := lines.Get().(*[]byte) // pooled, as the gateway's lines are
		line := (*bp)[:0]
		line = start.UTC().AppendFormat(line, time.RFC3339Nano)
		line = append(line, ' ')
		line = append(line, ctx.Method()...)
		line = append(line, ' ')
		line = append(line, ctx.Path()...)
		line = append(line, ' ')
		line = strconv.AppendInt(line, int64(ctx.Response.StatusCode()), 10)
		line = append(line, ' ')
		line = strconv.AppendFloat(line, time.Since(start).Seconds()*1e3, 'f', 3, 64)
		line = append(line, "ms\n"...)
		log.Write(line)
		*bp = line
		lines.Put(bp)
	}}
	return srv.Serve(ln)
}

var lines = sync.Pool{New: func() any { b := make([]byte, 0, 160); return &b }}
