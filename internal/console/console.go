package console

import (
	"crypto/subtle"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Prefix is where the console's pages are; "/" redirects there.
const Prefix = "/console/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configure the console.
type Options struct {
	// Logger receives failures to render a page; nil discards.
	Logger *slog.Logger
	// SessionLifetime is how long a session lasts after sign-in; 12
	// hours when zero.
	SessionLifetime time.Duration
}

// Console serves the console's pages. Create it with New.
type Console struct {
	api      http.Handler
	log      *slog.Logger
	sessions *sessions
	pages    map[string]*template.Template
	handler  http.Handler
	cop      *http.CrossOriginProtection
}

// contentSecurityPolicy allows the console's own script and stylesheet
// and nothing inline; no page may frame it and forms post only to it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// Wrap returns a handler that serves the console at "/" and "/console/..."
// and everything else from apiHandler, which the console also calls in
// process for every page.
func Wrap(apiHandler http.Handler, opts Options) http.Handler {
	c := New(apiHandler, opts)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := r.URL.Path; p == "/" || p == "/console" || strings.HasPrefix(p, Prefix) {
			c.ServeHTTP(w, r)
			return
		}
		apiHandler.ServeHTTP(w, r)
	})
}

// New returns the console over the REST API's handler.
func New(apiHandler http.Handler, opts Options) *Console {
	c := &Console{api: apiHandler, log: opts.Logger, cop: http.NewCrossOriginProtection()}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	life := opts.SessionLifetime
	if life <= 0 {
		life = 12 * time.Hour
	}
	c.sessions = newSessions(life)
	c.pages = parsePages()
	c.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.refuse(w, r, "This form was sent from another site, so it was refused. Open the console and try again.")
	}))
	c.routes()
	return c
}

func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusSeeOther) })
	m.HandleFunc("GET /console", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, Prefix, http.StatusSeeOther) })
	static, _ := fs.Sub(staticFS, "static")
	m.Handle("GET /console/static/", http.StripPrefix("/console/static/", staticFiles(static)))

	m.HandleFunc("GET /console/signin", c.signInPage)
	m.HandleFunc("POST /console/signin", c.signIn)
	m.HandleFunc("POST /console/signout", c.withSession(c.signOut))

	m.HandleFunc("GET /console/{$}", c.withSession(c.environmentsPage))
	m.HandleFunc("POST /console/environments", c.withSession(c.createEnvironment))
	m.HandleFunc("GET /console/environments/{env}", c.withSession(c.environmentPage))
	m.HandleFunc("POST /console/environments/{env}/connect", c.withSession(c.connect))
	m.HandleFunc("POST /console/environments/{env}/verify", c.withSession(c.verify))
	m.HandleFunc("GET /console/environments/{env}/disconnect", c.withSession(c.disconnectPage))
	m.HandleFunc("POST /console/environments/{env}/disconnect", c.withSession(c.disconnect))
	m.HandleFunc("POST /console/environments/{env}/delete", c.withSession(c.deleteEnvironment))

	m.HandleFunc("GET /console/runs", c.withSession(c.runsPage))
	m.HandleFunc("GET /console/runs/{id}", c.withSession(c.runPage))
	m.HandleFunc("POST /console/runs/{id}/end", c.withSession(c.endRun))

	m.HandleFunc("GET /console/tokens", c.withSession(c.tokensPage))
	m.HandleFunc("POST /console/tokens", c.withSession(c.createToken))
	m.HandleFunc("POST /console/tokens/{id}/revoke", c.withSession(c.revokeToken))

	m.HandleFunc("/console/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", nil, pageError{Title: "Not found", Message: "There is no such page in the console."})
	})
	c.handler = c.cop.Handler(m)
}

// ServeHTTP serves a console page with the console's security headers.
// A POST must come from the console's own origin (checked here) and
// carry the form's CSRF token (checked by each form's handler).
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
	if !strings.HasPrefix(r.URL.Path, "/console/static/") {
		h.Set("Cache-Control", "no-store")
	}
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	}
	c.handler.ServeHTTP(w, r)
}

// staticFiles serves the embedded stylesheet and script.
func staticFiles(fsys fs.FS) http.Handler {
	files := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	})
}

// withSession runs h for a signed-in request, after checking a POST's
// CSRF token; without a session it goes to the sign-in page.
func (c *Console) withSession(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.sessions.get(r)
		if s == nil {
			if r.Method == http.MethodGet {
				http.Redirect(w, r, Prefix+"signin?next="+url.QueryEscape(r.URL.Path), http.StatusSeeOther)
				return
			}
			c.render(w, r, http.StatusUnauthorized, "signin", nil, signInData{Error: "You are signed out. Sign in again to continue."})
			return
		}
		if r.Method == http.MethodPost && !sameToken(r.PostFormValue("csrf"), s.csrf) {
			c.refuse(w, r, "This form's security token is missing or out of date, so it was refused. Reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

func sameToken(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// refuse answers a POST that failed the CSRF checks.
func (c *Console) refuse(w http.ResponseWriter, r *http.Request, msg string) {
	c.render(w, r, http.StatusForbidden, "error", c.sessions.get(r), pageError{Title: "Request refused", Message: msg})
}

// pageError is what the error page shows.
type pageError struct {
	Title   string
	Message string
}

// apiFailure renders an API error that leaves nothing else to show: 404
// as not found, 403 as a role that may not do this.
func (c *Console) apiFailure(w http.ResponseWriter, r *http.Request, s *session, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		c.log.Error("console: API call", "path", r.URL.Path, "err", err)
		c.render(w, r, http.StatusInternalServerError, "error", s, pageError{Title: "Something went wrong", Message: "The console could not read the API's answer; the server log has the details."})
		return
	}
	switch ae.Status {
	case http.StatusUnauthorized:
		c.sessions.end(w, r)
		c.render(w, r, http.StatusUnauthorized, "signin", nil, signInData{Error: "Your API token is no longer accepted (revoked?). Sign in with another."})
	case http.StatusForbidden:
		c.render(w, r, http.StatusForbidden, "error", s, pageError{Title: "Not allowed with this token", Message: ae.Message})
	case http.StatusNotFound:
		c.render(w, r, http.StatusNotFound, "error", s, pageError{Title: "Not found", Message: ae.Message})
	default:
		c.render(w, r, ae.Status, "error", s, pageError{Title: "The API refused", Message: ae.Message})
	}
}
