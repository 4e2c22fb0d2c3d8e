package console

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/api"
	"github.com/tailgate-dev/tailgate/internal/connect"
)

// sessionCookie names the session; signInCookie carries the sign-in
// form's CSRF token before there is a session.
const (
	sessionCookie = "tailgate_session"
	signInCookie  = "tailgate_signin"
)

// maxSessions bounds the sessions kept in memory; past it the oldest go.
const maxSessions = 10000

// session is one signed-in browser. Its API token stays here: the
// browser holds only the session id.
type session struct {
	key       [32]byte // sha256 of the cookie's value
	token     string   // the tailgate API token pages are built with
	csrf      string   // every form's CSRF token
	role      string   // "admin" or "runner", to choose what to offer; the API decides
	tokenName string
	expires   time.Time

	mu    sync.Mutex
	flash *flash
}

// flash is what a POST leaves for the page it redirects to: shown once.
type flash struct {
	Env     string // the api.Environment it is about, if any
	Notice  string
	Error   *apiError
	Connect *connect.Result
	// Form keeps what a failed connect was given (never the API token),
	// so the person need not type the targets again.
	Form    *connectForm
	Created *api.CreatedToken
}

// connectForm is the connect form's values, without the API token.
type connectForm struct {
	Targets    string
	Control    string
	ControlURL string
}

func (s *session) setFlash(f *flash) {
	s.mu.Lock()
	s.flash = f
	s.mu.Unlock()
}

// takeFlash returns the flash and forgets it.
func (s *session) takeFlash() *flash {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flash
	s.flash = nil
	return f
}

// sessions is the in-memory session table.
type sessions struct {
	life time.Duration
	mu   sync.Mutex
	byID map[[32]byte]*session
}

func newSessions(life time.Duration) *sessions {
	return &sessions{life: life, byID: map[[32]byte]*session{}}
}

// start creates a session for token and sets its cookie.
func (ss *sessions) start(w http.ResponseWriter, r *http.Request, token, role, tokenName string) *session {
	id := randomToken()
	s := &session{key: sha256.Sum256([]byte(id)), token: token, csrf: randomToken(), role: role, tokenName: tokenName, expires: time.Now().Add(ss.life)}
	ss.mu.Lock()
	now := time.Now()
	for k, o := range ss.byID {
		if now.After(o.expires) {
			delete(ss.byID, k)
		}
	}
	for len(ss.byID) >= maxSessions {
		var oldest *session
		for _, o := range ss.byID {
			if oldest == nil || o.expires.Before(oldest.expires) {
				oldest = o
			}
		}
		delete(ss.byID, oldest.key)
	}
	ss.byID[s.key] = s
	ss.mu.Unlock()
	setCookie(w, r, sessionCookie, id, 0)
	return s
}

// get returns the request's session, or nil.
func (ss *sessions) get(r *http.Request) *session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	key := sha256.Sum256([]byte(ck.Value))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s := ss.byID[key]
	if s == nil {
		return nil
	}
	if time.Now().After(s.expires) {
		delete(ss.byID, key)
		return nil
	}
	return s
}

// end forgets the request's session and clears its cookie.
func (ss *sessions) end(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		key := sha256.Sum256([]byte(ck.Value))
		ss.mu.Lock()
		delete(ss.byID, key)
		ss.mu.Unlock()
	}
	setCookie(w, r, sessionCookie, "", -1)
}

// setCookie sets a console cookie: HttpOnly, SameSite=Strict, Secure when
// the request came over TLS. maxAge 0 is a browser-session cookie, <0
// deletes it.
func setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
}

// randomToken is 32 random bytes, URL-safe.
func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
