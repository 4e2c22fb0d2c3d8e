package httppolicy

import (
	"net/http"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// a2a marks the route as Agent2Agent traffic (Set.A2A). It has no
// settings and runs on no request itself: the gateway's host backend does
// the A2A work (agent-card rewriting, method logging), because it needs
// the backend's response.
var a2a = module("a2a", RouteSetting,
	func(p *config.RoutePolicies) *config.A2A { return p.A2A },
	func(*config.A2A, string, Compiler) Policy { return a2aSetting{} })

type a2aSetting struct{}

func (a2aSetting) configure(s *Set)                                            { s.A2A = true }
func (a2aSetting) Run(_ http.ResponseWriter, _ *http.Request, _ Exchange) bool { return true }
