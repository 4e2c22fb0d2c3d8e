package httppolicy

import (
	"net/http"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// HeaderModifier adds, sets and removes headers (requestHeaderModifier,
// responseHeaderModifier).
type HeaderModifier struct {
	Add    map[string]string
	Set    map[string]string
	Remove []string
}

// Apply changes h. For requests, a "host" entry changes hostOut.
func (m *HeaderModifier) Apply(h http.Header, hostOut *string) {
	for k, v := range m.Add {
		if strings.EqualFold(k, "host") && hostOut != nil {
			*hostOut = v
			continue
		}
		h.Add(k, v)
	}
	for k, v := range m.Set {
		if strings.EqualFold(k, "host") && hostOut != nil {
			*hostOut = v
			continue
		}
		h.Set(k, v)
	}
	for _, k := range m.Remove {
		h.Del(k)
	}
}

var requestHeaderModifier = module("requestHeaderModifier", RequestRewrite,
	func(p *config.RoutePolicies) *config.HeaderModifier { return p.RequestHeaderModifier },
	func(m *config.HeaderModifier, _ string, _ Compiler) Policy {
		return requestHeaders{&HeaderModifier{Add: m.Add, Set: m.Set, Remove: m.Remove}}
	})

var responseHeaderModifier = module("responseHeaderModifier", ResponseRewrite,
	func(p *config.RoutePolicies) *config.HeaderModifier { return p.ResponseHeaderModifier },
	func(m *config.HeaderModifier, _ string, _ Compiler) Policy {
		return responseHeaders{&HeaderModifier{Add: m.Add, Set: m.Set, Remove: m.Remove}}
	})

// requestHeaders modifies the request sent to the backend (a "host"
// entry changes its Host).
type requestHeaders struct{ *HeaderModifier }

func (m requestHeaders) Run(_ http.ResponseWriter, r *http.Request, _ Exchange) bool {
	m.Apply(r.Header, &r.Host)
	return true
}

// responseHeaders modifies the response's headers when they are written.
type responseHeaders struct{ *HeaderModifier }

func (m responseHeaders) Run(_ http.ResponseWriter, _ *http.Request, x Exchange) bool {
	x.ModifyResponse(m.HeaderModifier)
	return true
}
