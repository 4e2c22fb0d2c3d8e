package httppolicy

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
)

// redirect turns the service's 401 or 403 into a 302 to the URL Redirect
// computes (agentgateway's extAuthz protocol.http.redirect: send a
// browser to a sign-in page, e.g. oauth2-proxy's /oauth2/start). Other
// answers, and every answer without Redirect, are kept. A redirect that
// does not evaluate to a usable URL refuses with 403: the request stays
// denied, with no Location a caller could have shaped into a header.
func (e *ExtAuthz) redirect(out ExtAuthzOutcome, vars cel.Vars) ExtAuthzOutcome {
	if e.Redirect == nil || (out.Status != http.StatusUnauthorized && out.Status != http.StatusForbidden) {
		return out
	}
	denied := ExtAuthzOutcome{Status: http.StatusForbidden, Header: http.Header{}, Body: []byte("Forbidden\n")}
	v, err := e.Redirect.Native(vars)
	if err != nil {
		denied.Reason = "denied by service; redirect failed: " + err.Error()
		return denied
	}
	loc, ok := v.(string)
	if _, perr := url.Parse(loc); !ok || loc == "" || perr != nil || strings.ContainsAny(loc, "\r\n\x00") {
		denied.Reason = "denied by service; redirect is not a URL"
		return denied
	}
	return ExtAuthzOutcome{
		Status: http.StatusFound,
		Header: http.Header{"Location": {loc}},
		Reason: "denied by service; redirected",
	}
}
