package gateway

import (
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/tailgate-dev/tailgate/internal/gateway/httppolicy"
	"github.com/tailgate-dev/tailgate/internal/gateway/pathnorm"
)

// routeRequest normalizes the request's path (package pathnorm), once,
// and picks the listener's route for it. The request it returns carries
// the normalized path, so the route's policies judge, the access log
// records and the backend receives the same path. It returns a nil route
// when it has answered the request itself (400 or 404).
//
// A path with an encoded slash or a `;` is refused unless the route it
// lands on opted in (route.pathNormalization); the route is then chosen by
// the lenient reading of the path (pathnorm.Result.Match), so opting in on
// /api never lets `/api/..%2F..%2Fadmin` past the /admin route.
func (g *Gateway) routeRequest(w http.ResponseWriter, r *http.Request, ri *requestInfo, lt *listenerTable, host string) (*routeTable, *http.Request) {
	raw, err := targetPath(r)
	var res pathnorm.Result
	if err == nil {
		res, err = pathnorm.Normalize(raw, pathnorm.Options{})
	}
	strictErr := err
	if pathnorm.IsOptional(err) {
		res, err = pathnorm.Normalize(raw, pathnorm.Options{AllowEncodedSlashes: true, AllowSemicolons: true})
	}
	if err != nil {
		g.refusePath(w, ri, err)
		return nil, r
	}
	u := *r.URL
	u.RawPath = res.Path
	u.Path, _ = url.PathUnescape(res.Path) // cannot fail: Normalize checked every escape
	r.URL = &u
	match, _ := url.PathUnescape(res.Match)
	var rt *routeTable
	if e := lt.pickEntry(r, host, match); e != nil {
		rt = e.route
		ri.pathMatch = e.m.path
		if e.m.pathKind == 2 {
			ri.prefix = e.m.path
			ri.pathMatch = strings.TrimSuffix(e.m.path, "/") + "/*"
		}
	}
	switch {
	case rt == nil && strictErr != nil:
		g.refusePath(w, ri, strictErr)
		return nil, r
	case rt == nil:
		ri.denyReason = "no route"
		http.Error(w, "route not found", http.StatusNotFound)
		return nil, r
	case res.EncodedSlash && !rt.paths.AllowEncodedSlashes:
		g.refusePath(w, ri, pathnorm.ErrEncodedSlash)
		return nil, r
	case res.Semicolon && !rt.paths.AllowSemicolons:
		g.refusePath(w, ri, pathnorm.ErrSemicolon)
		return nil, r
	}
	return rt, r
}

// refusePath answers 400 for a path pathnorm refused; the reason never
// echoes the path.
func (g *Gateway) refusePath(w http.ResponseWriter, ri *requestInfo, err error) {
	reason := err.Error()
	var pe *pathnorm.Error
	if errors.As(err, &pe) {
		reason = pe.Reason
	}
	httppolicy.Deny(w, &exchange{g: g, ri: ri}, "pathNormalization", reason, http.StatusBadRequest, "invalid request path: "+reason)
}

// targetPath is the escaped path of the request target exactly as the
// client sent it, without the query: Go's r.URL.Path has already decoded
// it and r.URL.EscapedPath may re-encode it, and either would hide what
// pathnorm must see (a raw backslash looks like %5C there). Origin-form
// (/a/b) and absolute-form (http://host/a/b) targets are accepted;
// authority-form (CONNECT) and `*` have no path to route.
func targetPath(r *http.Request) (string, error) {
	uri := r.RequestURI
	if uri == "" { // a request not read by net/http's server (tests, embedding)
		uri = r.URL.EscapedPath()
	}
	// A fragment is never part of a request target (RFC 9112 §3.2);
	// whatever follows '#' is refused rather than guessed at.
	if strings.IndexByte(uri, '#') >= 0 {
		return "", pathnorm.ErrFragment
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	if strings.HasPrefix(uri, "/") {
		return uri, nil
	}
	if i := strings.Index(uri, "://"); i > 0 {
		rest := uri[i+len("://"):]
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			return rest[j:], nil
		}
		return "/", nil
	}
	return "", pathnorm.ErrNotAbsolute
}
