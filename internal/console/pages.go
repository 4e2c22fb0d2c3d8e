package console

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/connect"
	"github.com/tailgate-dev/tailgate/internal/controlplane"
)

// page is what every template gets.
type page struct {
	Title   string
	Nav     string // the navigation entry to mark current
	Session *sessionView
	Flash   *flash
	Data    any
	// Refresh reloads the page after so many seconds (an open run's
	// report), done by console.js; 0 never.
	Refresh int
}

// sessionView is the signed-in person as the layout shows them.
type sessionView struct {
	TokenName string
	Role      string
	Admin     bool
	CSRF      string
}

var pageTitles = map[string]string{
	"signin":       "Sign in",
	"environments": "Environments",
	"environment":  "Environment",
	"disconnect":   "Disconnect",
	"runs":         "Runs",
	"run":          "Run",
	"tokens":       "API tokens",
	"error":        "Error",
}

// parsePages parses the layout with each page template.
func parsePages() map[string]*template.Template {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		panic(err)
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" {
			continue
		}
		pages[name] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, n))
	}
	return pages
}

// render writes a page with status.
func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, name string, s *session, data any) {
	p := page{Title: pageTitles[name], Nav: name, Data: data}
	if s != nil {
		p.Session = &sessionView{TokenName: s.tokenName, Role: s.role, Admin: s.role == "admin", CSRF: s.csrf}
		if r.Method == http.MethodGet {
			p.Flash = s.takeFlash()
		}
	}
	switch d := data.(type) {
	case signInData:
		p.Session = nil
	case environmentView:
		p.Title = d.Env.Name
	case runView:
		p.Title = "Run " + d.Run.ID
		if d.Run.State != "ended" {
			p.Refresh = 5
		}
	case pageError:
		p.Title = d.Title
	}
	var buf bytes.Buffer
	if err := c.pages[name].ExecuteTemplate(&buf, "layout.html", p); err != nil {
		c.log.Error("console: render", "page", name, "err", err)
		http.Error(w, "the console could not render this page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// seeOther redirects after a POST.
func seeOther(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}

func envPath(name string) string { return Prefix + "environments/" + url.PathEscape(name) }

func apiEnvPath(name string) string { return "/v1/environments/" + url.PathEscape(name) }

// asAPIError is err as an API error, or nil (then err is the console's
// own failure).
func asAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	return nil
}

// flashError keeps err for the next page; an error that is not the API's
// is logged and worded generally.
func (c *Console) flashError(s *session, env string, err error, form *connectForm) {
	ae := asAPIError(err)
	if ae == nil {
		c.log.Error("console: API call", "err", err)
		ae = &apiError{Status: 500, Code: "internal", Message: "the console could not read the API's answer; the server log has the details"}
	}
	s.setFlash(&flash{Env: env, Error: ae, Form: form})
}

// ---- sign in and out

type signInData struct {
	CSRF   string
	Next   string
	Error  string
	Notice string
}

func (c *Console) signInPage(w http.ResponseWriter, r *http.Request) {
	if c.sessions.get(r) != nil {
		seeOther(w, r, Prefix)
		return
	}
	d := signInData{Next: safeNext(r.URL.Query().Get("next"))}
	if r.URL.Query().Has("signed_out") {
		d.Notice = "You are signed out."
	}
	c.renderSignIn(w, r, http.StatusOK, d)
}

// renderSignIn renders the sign-in form with a fresh CSRF token, kept in
// a cookie until the form comes back (there is no session yet).
func (c *Console) renderSignIn(w http.ResponseWriter, r *http.Request, status int, d signInData) {
	d.CSRF = randomToken()
	setCookie(w, r, signInCookie, d.CSRF, 600)
	c.render(w, r, status, "signin", nil, d)
}

// safeNext keeps a redirect target inside the console.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix) || strings.Contains(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix
	}
	return next
}

func (c *Console) signIn(w http.ResponseWriter, r *http.Request) {
	ck, err := r.Cookie(signInCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), ck.Value) {
		c.refuse(w, r, "The sign-in form's security token is missing or out of date, so it was refused. Reload the page and try again.")
		return
	}
	next := safeNext(r.PostFormValue("next"))
	token := strings.TrimSpace(r.PostFormValue("token"))
	if token == "" {
		c.renderSignIn(w, r, http.StatusBadRequest, signInData{Next: next, Error: "Enter a tailgate API token (tg_...)."})
		return
	}
	// Any valid token may list environments; the token list tells an
	// admin token from a runner one (a runner is refused it).
	if err := c.call(r.Context(), token, http.MethodGet, "/v1/environments", nil, nil); err != nil {
		msg := "That token was not accepted: it is unknown or revoked."
		if ae := asAPIError(err); ae == nil || ae.Status != http.StatusUnauthorized {
			c.log.Error("console: sign in", "err", err)
			msg = "Signing in failed; the server log has the details."
		}
		c.renderSignIn(w, r, http.StatusUnauthorized, signInData{Next: next, Error: msg})
		return
	}
	role, name := "runner", ""
	var toks api.TokenList
	if err := c.call(r.Context(), token, http.MethodGet, "/v1/tokens", nil, &toks); err == nil {
		role = "admin"
		for _, t := range toks.Tokens {
			if t.Current {
				name = t.Name
			}
		}
	}
	c.sessions.end(w, r)
	c.sessions.start(w, r, token, role, name)
	setCookie(w, r, signInCookie, "", -1)
	seeOther(w, r, next)
}

func (c *Console) signOut(w http.ResponseWriter, r *http.Request, s *session) {
	c.sessions.end(w, r)
	seeOther(w, r, Prefix+"signin?signed_out")
}

// ---- environments

// environmentRow is one line of the environments list.
type environmentRow struct {
	api.Environment
	LastVerified *time.Time
	LastOK       bool
}

func (c *Console) environmentsPage(w http.ResponseWriter, r *http.Request, s *session) {
	var list api.EnvironmentList
	if !c.getForPage(w, r, s, "/v1/environments", &list) {
		return
	}
	rows := make([]environmentRow, 0, len(list.Environments))
	for _, e := range list.Environments {
		row := environmentRow{Environment: e}
		var st connect.Status
		if e.State != "disconnected" && c.call(r.Context(), s.token, http.MethodGet, apiEnvPath(e.Name)+"/private-network", nil, &st) == nil && st.LastVerification != nil {
			at := st.LastVerification.At
			row.LastVerified, row.LastOK = &at, st.LastVerification.OK
		}
		rows = append(rows, row)
	}
	c.render(w, r, http.StatusOK, "environments", s, rows)
}

func (c *Console) createEnvironment(w http.ResponseWriter, r *http.Request, s *session) {
	name := strings.TrimSpace(r.PostFormValue("name"))
	var env api.Environment
	if err := c.call(r.Context(), s.token, http.MethodPost, "/v1/environments", map[string]string{"name": name}, &env); err != nil {
		c.flashError(s, "", err, nil)
		seeOther(w, r, Prefix)
		return
	}
	s.setFlash(&flash{Env: env.Name, Notice: fmt.Sprintf("Environment %s created. Connect it to a tailnet below.", env.Name)})
	seeOther(w, r, envPath(env.Name))
}

// environmentView is the environment page.
type environmentView struct {
	Env    api.Environment
	Status connect.Status
	// Breadth are the warnings that a DNS name was granted as every
	// approved subnet route; Other are the rest.
	Breadth, Other []string
	Connect        *connect.Result
	Form           connectForm
}

func (c *Console) environmentPage(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("env")
	var env api.Environment
	if !c.getForPage(w, r, s, apiEnvPath(name), &env) {
		return
	}
	v := environmentView{Env: env, Form: connectForm{Control: "tailscale"}}
	if env.PrivateNetwork != nil {
		v.Status = *env.PrivateNetwork
		v.Form.Targets = strings.Join(v.Status.Targets, "\n")
		// The status names a control only when it is not the server's own.
		if ctl := v.Status.Control; ctl != nil {
			v.Form.Control, v.Form.ControlURL = string(ctl.Type), ctl.URL
		}
	}
	warnings := v.Status.Warnings
	// The page renders the flash itself (it is about this api.Environment).
	f := s.takeFlash()
	if f != nil && f.Env != "" && f.Env != env.Name {
		f = nil
	}
	if f != nil {
		v.Connect = f.Connect
		if f.Form != nil {
			v.Form = *f.Form
		}
		if f.Connect != nil {
			warnings = f.Connect.Warnings
		}
	}
	v.Breadth, v.Other = splitWarnings(warnings, v.Connect)
	s.setFlash(f)
	c.render(w, r, http.StatusOK, "environment", s, v)
}

// splitWarnings puts first the warnings that an internal DNS name was
// granted as every approved subnet route: the connect result says which
// targets are DNS names; a stored status has only the sentences.
func splitWarnings(warnings []string, res *connect.Result) (breadth, other []string) {
	for _, w := range warnings {
		isBreadth := strings.Contains(w, "broader than")
		if res != nil {
			isBreadth = slices.ContainsFunc(res.Targets, func(t connect.TargetSummary) bool { return t.Kind == "dns-name" && t.Warning == w })
		}
		if isBreadth {
			breadth = append(breadth, w)
		} else {
			other = append(other, w)
		}
	}
	return breadth, other
}

// targetsFromForm splits the targets box: one per line, blank lines and
// surrounding spaces ignored (commas too, for a pasted list).
func targetsFromForm(s string) []string {
	var out []string
	for _, line := range strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' || r == ',' }) {
		if t := strings.TrimSpace(line); t != "" {
			out = append(out, t)
		}
	}
	return out
}

func (c *Console) connect(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("env")
	form := connectForm{Targets: r.PostFormValue("targets"), Control: r.PostFormValue("control"), ControlURL: strings.TrimSpace(r.PostFormValue("control_url"))}
	body := map[string]any{"api_token": strings.TrimSpace(r.PostFormValue("api_token")), "targets": targetsFromForm(form.Targets)}
	if form.Control == "headscale" {
		body["control"] = controlplane.Control{Type: controlplane.Headscale, URL: form.ControlURL}
	} else {
		form.Control = "tailscale"
	}
	var res connect.Result
	err := c.call(r.Context(), s.token, http.MethodPut, apiEnvPath(name)+"/private-network", body, &res)
	clear(body) // the API token is used for this request only
	if err != nil {
		c.flashError(s, name, err, &form)
		seeOther(w, r, envPath(name)+"#connect")
		return
	}
	s.setFlash(&flash{Env: name, Connect: &res, Notice: "Connected. Review the granted CIDRs, then verify."})
	seeOther(w, r, envPath(name)+"#result")
}

func (c *Console) verify(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("env")
	var v connect.Verification
	if err := c.call(r.Context(), s.token, http.MethodPost, apiEnvPath(name)+"/private-network/verify", nil, &v); err != nil {
		c.flashError(s, name, err, nil)
		seeOther(w, r, envPath(name)+"#verification")
		return
	}
	failing := 0
	for _, t := range v.Targets {
		if !t.OK {
			failing++
		}
	}
	msg := fmt.Sprintf("Verified: all %d targets are reachable through the tailnet.", len(v.Targets))
	if failing > 0 {
		msg = fmt.Sprintf("Verification done: %d of %d targets are not reachable; each has a hint below.", failing, len(v.Targets))
	}
	s.setFlash(&flash{Env: name, Notice: msg})
	seeOther(w, r, envPath(name)+"#verification")
}

// disconnectView is the disconnect confirmation.
type disconnectView struct {
	Env   api.Environment
	Error string
}

func (c *Console) disconnectPage(w http.ResponseWriter, r *http.Request, s *session) {
	var env api.Environment
	if !c.getForPage(w, r, s, apiEnvPath(r.PathValue("env")), &env) {
		return
	}
	c.render(w, r, http.StatusOK, "disconnect", s, disconnectView{Env: env})
}

func (c *Console) disconnect(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("env")
	if r.PostFormValue("confirm") != "yes" {
		var env api.Environment
		if !c.getForPage(w, r, s, apiEnvPath(name), &env) {
			return
		}
		c.render(w, r, http.StatusBadRequest, "disconnect", s, disconnectView{Env: env, Error: "Tick the box to confirm the disconnect."})
		return
	}
	body := map[string]string{"api_token": strings.TrimSpace(r.PostFormValue("api_token"))}
	err := c.call(r.Context(), s.token, http.MethodDelete, apiEnvPath(name)+"/private-network", body, nil)
	clear(body)
	if err != nil {
		if ae := asAPIError(err); ae != nil && ae.Status != http.StatusNotFound && !ae.Forbidden() && ae.Status != http.StatusUnauthorized {
			var env api.Environment
			if c.call(r.Context(), s.token, http.MethodGet, apiEnvPath(name), nil, &env) == nil {
				c.render(w, r, ae.Status, "disconnect", s, disconnectView{Env: env, Error: ae.Message})
				return
			}
		}
		c.apiFailure(w, r, s, err)
		return
	}
	s.setFlash(&flash{Env: name, Notice: "Disconnected: tailgate's policy entries were removed, its OAuth client revoked and the sealed secret deleted."})
	seeOther(w, r, envPath(name))
}

func (c *Console) deleteEnvironment(w http.ResponseWriter, r *http.Request, s *session) {
	name := r.PathValue("env")
	if err := c.call(r.Context(), s.token, http.MethodDelete, apiEnvPath(name), nil, nil); err != nil {
		c.flashError(s, name, err, nil)
		seeOther(w, r, envPath(name))
		return
	}
	s.setFlash(&flash{Notice: fmt.Sprintf("Environment %s deleted.", name)})
	seeOther(w, r, Prefix)
}

// ---- runs

func (c *Console) runsPage(w http.ResponseWriter, r *http.Request, s *session) {
	var list api.RunList
	if !c.getForPage(w, r, s, "/v1/runs", &list) {
		return
	}
	c.render(w, r, http.StatusOK, "runs", s, list.Runs)
}

// runView is one run's page.
type runView struct {
	Run      api.Run
	Refused  int
	BytesIn  int64
	BytesOut int64
}

func (c *Console) runPage(w http.ResponseWriter, r *http.Request, s *session) {
	var run api.Run
	if !c.getForPage(w, r, s, "/v1/runs/"+url.PathEscape(r.PathValue("id")), &run) {
		return
	}
	v := runView{Run: run}
	for _, e := range run.Events {
		if e.Refused {
			v.Refused++
		}
		v.BytesOut += e.BytesUp
		v.BytesIn += e.BytesDown
	}
	c.render(w, r, http.StatusOK, "run", s, v)
}

func (c *Console) endRun(w http.ResponseWriter, r *http.Request, s *session) {
	id := url.PathEscape(r.PathValue("id"))
	c.deleteThenRedirect(w, r, s, "/v1/runs/"+id, "Run ended: its node left the tailnet.", Prefix+"runs/"+id)
}

// deleteThenRedirect is what a button that deletes one API resource does:
// DELETE apiPath; on success, show notice on the page at next; on failure,
// the API's answer (apiFailure).
func (c *Console) deleteThenRedirect(w http.ResponseWriter, r *http.Request, s *session, apiPath, notice, next string) {
	if err := c.call(r.Context(), s.token, http.MethodDelete, apiPath, nil, nil); err != nil {
		c.apiFailure(w, r, s, err)
		return
	}
	s.setFlash(&flash{Notice: notice})
	seeOther(w, r, next)
}

// ---- tokens

func (c *Console) tokensPage(w http.ResponseWriter, r *http.Request, s *session) {
	var list api.TokenList
	if !c.getForPage(w, r, s, "/v1/tokens", &list) {
		return
	}
	c.render(w, r, http.StatusOK, "tokens", s, list.Tokens)
}

func (c *Console) createToken(w http.ResponseWriter, r *http.Request, s *session) {
	var tok api.CreatedToken
	body := map[string]string{"name": strings.TrimSpace(r.PostFormValue("name")), "role": "runner"}
	if err := c.call(r.Context(), s.token, http.MethodPost, "/v1/tokens", body, &tok); err != nil {
		if ae := asAPIError(err); ae != nil && ae.Forbidden() {
			c.apiFailure(w, r, s, err)
			return
		}
		c.flashError(s, "", err, nil)
		seeOther(w, r, Prefix+"tokens")
		return
	}
	s.setFlash(&flash{Created: &tok})
	seeOther(w, r, Prefix+"tokens")
}

func (c *Console) revokeToken(w http.ResponseWriter, r *http.Request, s *session) {
	c.deleteThenRedirect(w, r, s, "/v1/tokens/"+url.PathEscape(r.PathValue("id")), "Token revoked: it no longer authenticates.", Prefix+"tokens")
}
