package gateway

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/tailgate-dev/tailgate/internal/gateway/mcp"
)

// The admin page (GET /ui on the admin listener) shows what the gateway
// serves: the compiled config with secrets redacted (Redact), every
// bind, listener and route with its matches, backends and policies, the
// MCP targets with the tools each last listed, and request counts from
// tailgate_gateway_requests_total. It is read-only: GET and HEAD only,
// no forms, so it needs no CSRF token; it sends the web console's
// security headers (a strict Content-Security-Policy with
// frame-ancestors 'none', no inline script or style).
//
// MCP tools are not fetched for the page: a page view would otherwise
// start stdio targets and call remote ones. The page shows each
// target's latest tools/list answer as the federation received it for a
// client (mcp.Backend.ToolListings), and when that was.

//go:embed adminui
var adminUI embed.FS

var adminTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"when": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
}).ParseFS(adminUI, "adminui/*.html"))

// countsRefresh is how often the page's script reloads the counts.
const countsRefresh = 5 * time.Second

// adminPageHeaders are the admin pages' security headers, as the web
// console sends them: only the page's own script and stylesheet, no
// framing, no forms, nothing cached.
var adminPageHeaders = map[string]string{
	"Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; " +
		"img-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
	"X-Frame-Options":              "DENY",
	"X-Content-Type-Options":       "nosniff",
	"Referrer-Policy":              "no-referrer",
	"Cross-Origin-Opener-Policy":   "same-origin",
	"Cross-Origin-Resource-Policy": "same-origin",
	"Cache-Control":                "no-store",
}

// adminPages adds the admin page, its counts fragment and its static
// files to the admin listener's mux; "/" leads to the page.
func (g *Gateway) adminPages(mux *http.ServeMux) {
	static, _ := fs.Sub(adminUI, "adminui/static")
	files := http.StripPrefix("/ui/static/", http.FileServerFS(static))
	mux.Handle("GET /ui/static/", adminPage(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r) // no directory listings
			return
		}
		files.ServeHTTP(w, r)
	}))
	mux.Handle("GET /{$}", adminPage(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui", http.StatusSeeOther)
	}))
	mux.Handle("GET /ui", adminPage(func(w http.ResponseWriter, r *http.Request) {
		g.renderAdmin(w, "page", g.adminView())
	}))
	mux.Handle("GET /ui/counts", adminPage(func(w http.ResponseWriter, r *http.Request) {
		g.renderAdmin(w, "counts", g.metrics.requestCounts())
	}))
}

// adminPage wraps an admin page's handler: security headers, and the
// MCP endpoint's DNS-rebinding check (on a loopback admin address, Host
// and Origin must be loopback too).
func adminPage(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range adminPageHeaders {
			w.Header().Set(k, v)
		}
		if err := mcp.CheckRebinding(r); err != nil {
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		h(w, r)
	})
}

func (g *Gateway) renderAdmin(w http.ResponseWriter, name string, data any) {
	var b strings.Builder
	if err := adminTemplates.ExecuteTemplate(&b, name, data); err != nil {
		g.log.Error("admin page", "template", name, "error", err)
		http.Error(w, "the admin page could not be rendered; see the gateway's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprint(w, b.String())
}

// adminView is what the admin page shows.
type adminView struct {
	File     string
	LoadedAt time.Time
	SHA256   string
	Warnings []string
	Binds    []adminBind
	MCP      []adminMCP
	Counts   requestCounts
	// Config is the loaded file, redacted, as YAML.
	Config string
}

type adminBind struct {
	BindStatus // Addr is "" while the bind is not listening
	Listeners  []adminListener
}

type adminListener struct {
	Name, Hostname string
	adminPolicies
	Routes []adminRoute
}

type adminRoute struct {
	Name, Key string
	Hostnames []string
	Matches   []string
	Backends  []string
	adminPolicies
}

// adminPolicies are a listener's or route's policies: their keys in the
// order they apply, and their block from the file, redacted, as YAML.
type adminPolicies struct {
	Policies   []string
	PolicyYAML string
}

type adminMCP struct {
	Route   string
	Targets []adminTarget
}

type adminTarget struct {
	Name, Kind, Address string
	ListedAt            time.Time
	Tools               []mcp.ListedTool
}

func (g *Gateway) adminView() adminView {
	s := g.snap.Load()
	tree := s.redacted()
	v := adminView{
		File: g.opts.ConfigPath, LoadedAt: s.loadedAt, SHA256: fmt.Sprintf("%x", s.hash),
		Warnings: s.warnings, Counts: g.metrics.requestCounts(),
	}
	v.Config = yamlText(tree)
	listening := map[string]BindStatus{}
	for _, b := range g.bindStatus() {
		listening[b.Bind] = b
	}
	for _, port := range slices.Sorted(maps.Keys(s.binds)) {
		bt := s.binds[port]
		name := fmt.Sprintf("bind/%d", port)
		ab := adminBind{BindStatus: listening[name]}
		ab.Bind = name
		if ab.Network == "" {
			ab.Network = map[bool]string{true: "tailnet", false: "host"}[bt.tailnet]
		}
		for _, lt := range bt.listeners {
			al := adminListener{Name: lt.name, Hostname: lt.hostname, adminPolicies: policiesOf(tree, lt.path, lt.policies.Keys())}
			for _, rt := range lt.routesInConfigOrder() {
				al.Routes = append(al.Routes, adminRouteOf(tree, lt, rt))
				if m := mcpOf(rt); m != nil {
					v.MCP = append(v.MCP, *m)
				}
			}
			ab.Listeners = append(ab.Listeners, al)
		}
		v.Binds = append(v.Binds, ab)
	}
	return v
}

// routesInConfigOrder are the listener's routes, each once, in the
// order the file lists them (lt.routes is one entry per match, ranked).
func (lt *listenerTable) routesInConfigOrder() []*routeTable {
	entries := append([]routeEntry(nil), lt.routes...)
	sort.Slice(entries, func(i, j int) bool { return entries[i].m.configIdx < entries[j].m.configIdx })
	var out []*routeTable
	seen := map[*routeTable]bool{}
	for _, e := range entries {
		if !seen[e.route] {
			seen[e.route] = true
			out = append(out, e.route)
		}
	}
	return out
}

func adminRouteOf(tree map[string]any, lt *listenerTable, rt *routeTable) adminRoute {
	ar := adminRoute{Name: rt.name, Key: rt.key, Hostnames: rt.hostnames}
	for _, e := range lt.routes {
		if e.route == rt {
			ar.Matches = append(ar.Matches, e.m.describe())
		}
	}
	for _, b := range rt.backends {
		name := redactNamed("backend", b.Name())
		if len(rt.backends) > 1 {
			name += fmt.Sprintf(" (weight %d)", b.weight)
		}
		ar.Backends = append(ar.Backends, name)
	}
	keys := rt.policies.Keys()
	if block, ok := yamlAt(tree, rt.path+".policies").(map[string]any); ok && block["mcpAuthorization"] != nil {
		keys = append(keys, "mcpAuthorization") // applied by the MCP backend, not an httppolicy module
	}
	ar.adminPolicies = policiesOf(tree, rt.path, keys)
	return ar
}

func policiesOf(tree map[string]any, path string, keys []string) adminPolicies {
	p := adminPolicies{Policies: keys}
	if block := yamlAt(tree, path+".policies"); block != nil {
		p.PolicyYAML = yamlText(block)
	}
	return p
}

// yamlText is v (already redacted) as YAML indented by two spaces.
func yamlText(v any) string {
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	enc.Close()
	return b.String()
}

// yamlAt finds the value at a YAML path as the compiler writes them
// ("binds[0].listeners[1].routes[2].policies") in a decoded file.
func yamlAt(tree map[string]any, path string) any {
	var cur any = tree
	for _, seg := range strings.Split(path, ".") {
		name, idx, indexed := strings.Cut(seg, "[")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[name]
		if indexed {
			i, err := strconv.Atoi(strings.TrimSuffix(idx, "]"))
			list, ok := cur.([]any)
			if err != nil || !ok || i < 0 || i >= len(list) {
				return nil
			}
			cur = list[i]
		}
	}
	return cur
}

// describe words a route match for the admin page; header and query
// values go through the redaction helper (a match on a credential
// header shows only its name).
func (m matcher) describe() string {
	var parts []string
	switch m.pathKind {
	case 3:
		parts = append(parts, "path = "+m.path)
	case 2:
		parts = append(parts, "path prefix "+m.path)
	case 1:
		parts = append(parts, "path ~ "+m.path)
	}
	if m.method != "" {
		parts = append(parts, "method "+m.method)
	}
	for _, list := range []struct {
		what string
		vs   []valueMatcher
	}{{"header", m.headers}, {"query", m.query}} {
		for _, v := range list.vs {
			switch {
			case v.exact != nil:
				parts = append(parts, fmt.Sprintf("%s %s = %s", list.what, v.name, redactNamed(v.name, *v.exact)))
			case v.re != nil:
				parts = append(parts, fmt.Sprintf("%s %s ~ %s", list.what, v.name, redactNamed(v.name, unanchored(v.re))))
			}
		}
	}
	return strings.Join(parts, " · ")
}

// unanchored is a compiled match regex as it was written.
func unanchored(re *regexp.Regexp) string {
	return strings.TrimSuffix(strings.TrimPrefix(re.String(), "^(?:"), ")$")
}

func mcpOf(rt *routeTable) *adminMCP {
	var out *adminMCP
	for _, wb := range rt.backends {
		mb, ok := wb.Backend.(*mcp.Backend)
		if !ok {
			continue
		}
		if out == nil {
			out = &adminMCP{Route: rt.key}
		}
		for _, tl := range mb.ToolListings() {
			at := adminTarget{Name: tl.Target.Name, ListedAt: tl.ListedAt, Tools: tl.Tools}
			switch t := tl.Target; {
			case t.Stdio != nil:
				at.Kind, at.Address = "stdio", t.Stdio.Cmd // args and env may carry secrets
			case t.HTTP != "":
				at.Kind, at.Address = "streamable HTTP", redactURL(t.HTTP)
			case t.SSE != "":
				at.Kind, at.Address = "SSE", redactURL(t.SSE)
			}
			out.Targets = append(out.Targets, at)
		}
	}
	return out
}

// requestCounts are tailgate_gateway_requests_total, summed over binds
// and methods: in all, by status, and by route and status.
type requestCounts struct {
	At       time.Time
	Total    uint64
	ByStatus []statusCount
	Routes   []routeCount
	Refresh  int
}

type routeCount struct {
	Route    string // "<listener>/<route>"; "" for requests no route matched
	Total    uint64
	ByStatus []statusCount
}

type statusCount struct {
	Status string
	N      uint64
}

// requestCounts reads the request counter through a registry of its
// own, so the page costs the request path nothing and gathers nothing
// else.
func (m *metrics) requestCounts() requestCounts {
	rc := requestCounts{At: time.Now(), Refresh: int(countsRefresh / time.Second)}
	reg := prometheus.NewRegistry()
	if err := reg.Register(m.requests); err != nil {
		return rc
	}
	families, err := reg.Gather()
	if err != nil {
		return rc
	}
	byStatus := map[string]uint64{}
	byRoute := map[string]map[string]uint64{}
	for _, f := range families {
		for _, mt := range f.GetMetric() {
			var route, status string
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "route":
					route = l.GetValue()
				case "status":
					status = l.GetValue()
				}
			}
			n := uint64(mt.GetCounter().GetValue())
			rc.Total += n
			byStatus[status] += n
			if byRoute[route] == nil {
				byRoute[route] = map[string]uint64{}
			}
			byRoute[route][status] += n
		}
	}
	rc.ByStatus = statusCounts(byStatus)
	for route, st := range byRoute {
		r := routeCount{Route: route, ByStatus: statusCounts(st)}
		for _, s := range r.ByStatus {
			r.Total += s.N
		}
		rc.Routes = append(rc.Routes, r)
	}
	sort.Slice(rc.Routes, func(i, j int) bool { return rc.Routes[i].Route < rc.Routes[j].Route })
	return rc
}

func statusCounts(m map[string]uint64) []statusCount {
	out := make([]statusCount, 0, len(m))
	for s, n := range m {
		out = append(out, statusCount{Status: s, N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Status < out[j].Status })
	return out
}
