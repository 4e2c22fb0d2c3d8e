package httppolicy

import (
	"net/http"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

var timeout = module("timeout", RouteSetting,
	func(p *config.RoutePolicies) *config.Timeout { return p.Timeout },
	func(t *config.Timeout, _ string, _ Compiler) Policy {
		return &routeTimeout{request: t.RequestTimeout.D, backend: t.BackendRequestTimeout.D}
	})

// routeTimeout bounds its route: the gateway puts the request timeout on
// the whole request (policies and backend) and the backend timeout on the
// backend's part. It never runs on a request itself.
type routeTimeout struct{ request, backend time.Duration }

func (t *routeTimeout) configure(s *Set) {
	s.RequestTimeout, s.BackendTimeout = t.request, t.backend
}

func (t *routeTimeout) Run(_ http.ResponseWriter, _ *http.Request, _ Exchange) bool { return true }
