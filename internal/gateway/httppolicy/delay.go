package httppolicy

import (
	"net/http"
	"strings"
	"time"

	"github.com/google/cel-go/common/types"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// Delay is the route's `delay:` block: it injects latency before the
// request is forwarded. Duration is a CEL expression returning a
// duration or a number of milliseconds (a duration literal such as "2s"
// is accepted too). It is declared here, not in gateway/config: see
// "Adding a policy" in the package doc.
type Delay struct {
	Pos      config.Pos `yaml:"-"`
	Duration string     `yaml:"duration,required"`
}

var delay = blockModule("delay", Forward, config.RouteLevel,
	func(d *Delay, path string, c Compiler) Policy {
		src := d.Duration
		if dur, err := time.ParseDuration(strings.TrimSpace(src)); err == nil {
			return &faultDelay{fixed: dur}
		}
		return &faultDelay{x: c.Expression(cel.Request, d.Pos, path+".duration", src)}
	})

// faultDelay waits before the request is forwarded: a duration, or a
// number of milliseconds; a non-positive or erroring result waits not at
// all (delay.rs). The wait counts against the route's request timeout.
type faultDelay struct {
	fixed time.Duration
	x     *cel.Expression
}

func (d *faultDelay) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	dur := d.fixed
	if d.x != nil {
		v, err := d.x.Eval(x.Vars())
		if err != nil {
			return true
		}
		switch t := v.(type) {
		case types.Duration:
			dur = t.Duration
		case types.Int:
			dur = time.Duration(t) * time.Millisecond
		case types.Uint:
			dur = time.Duration(t) * time.Millisecond
		case types.Double:
			dur = time.Duration(float64(t) * float64(time.Millisecond))
		}
	}
	if dur <= 0 {
		return true
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		Deny(w, x, "delay", "request timeout during injected delay", http.StatusGatewayTimeout, "request timeout")
		return false
	}
}
