package httppolicy

import (
	"fmt"
	"net/http"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// Retry is the route's `retry:` block: resend a request whose backend
// answered one of Codes (or could not be reached), up to Attempts more
// times. It is declared here, not in gateway/config: see "Adding a
// policy" in the package doc.
type Retry struct {
	Pos          config.Pos         `yaml:"-"`
	Attempts     int                `yaml:"attempts"`
	Backoff      config.Duration    `yaml:"backoff"`
	Codes        []int              `yaml:"codes,required"`
	Precondition config.Unsupported `yaml:"precondition"`
	Condition    config.Unsupported `yaml:"condition"`
}

// Check defaults attempts to 1 and checks the ranges and the backoff.
func (r *Retry) Check(c *config.Check, path string) {
	if r.Attempts == 0 {
		r.Attempts = 1
	}
	if r.Attempts > 255 {
		c.Fail(r.Pos, path+".attempts", "expected 1 to 255, got %d", r.Attempts)
	}
	c.Duration(r.Pos, path+".backoff", &r.Backoff, true)
	for i, code := range r.Codes {
		if code < 100 || code > 999 {
			c.Fail(r.Pos, fmt.Sprintf("%s.codes[%d]", path, i), "expected an HTTP status code, got %d", code)
		}
	}
}

var retry = blockModule("retry", RouteSetting, config.RouteLevel,
	func(rc *Retry, _ string, _ Compiler) Policy {
		codes := map[int]bool{}
		for _, c := range rc.Codes {
			codes[c] = true
		}
		return &RetrySpec{Attempts: rc.Attempts, Backoff: rc.Backoff.D, Codes: codes}
	})

// RetrySpec resends a request whose backend answered one of Codes, or
// could not be reached, up to Attempts more times, Backoff apart. Only
// requests whose body can be replayed are retried.
type RetrySpec struct {
	Attempts int
	Backoff  time.Duration
	Codes    map[int]bool
}

func (rs *RetrySpec) configure(s *Set) { s.Retry = rs }

func (rs *RetrySpec) Run(_ http.ResponseWriter, _ *http.Request, _ Exchange) bool { return true }
