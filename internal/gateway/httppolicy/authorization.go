package httppolicy

import (
	"net/http"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

var authorization = module("authorization", Authorization,
	func(p *config.RoutePolicies) *config.RuleSet { return p.Authorization },
	func(rs *config.RuleSet, path string, c Compiler) Policy {
		set := c.Rules(cel.Request, rs, path)
		if set == nil {
			return nil
		}
		return authorizationRules{set}
	})

// authorizationRules decides with request-phase rules (gateway/cel's
// decision order); a denial is a 403 naming the rule in the log.
type authorizationRules struct{ *cel.Set }

func (a authorizationRules) Run(w http.ResponseWriter, _ *http.Request, x Exchange) bool {
	v := a.Decide(x.Vars())
	if v.Allowed {
		return true
	}
	reason := v.Reason
	if v.Rule != "" {
		reason += " (" + v.Rule + ")"
	}
	Deny(w, x, "authorization", reason, http.StatusForbidden, "forbidden")
	return false
}
