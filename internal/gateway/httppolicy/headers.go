package httppolicy

import (
	"net/http"
	"strings"
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
