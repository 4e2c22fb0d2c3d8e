package httppolicy

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// CORS answers preflight requests and adds CORS headers to responses for
// allowed origins.
type CORS struct {
	AllowCredentials bool
	AllowHeaders     []string
	AllowMethods     []string
	AllowOrigins     []string // "*", exact origins, or "https://*.example.com"
	ExposeHeaders    []string
	MaxAge           time.Duration
}

// allowed reports whether origin may make CORS requests.
func (c *CORS) allowed(origin string) bool {
	for _, o := range c.AllowOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
		if i := strings.Index(o, "*."); i >= 0 && strings.HasPrefix(origin, o[:i]) && strings.HasSuffix(origin, o[i+1:]) && len(origin) > len(o)-1 {
			return true
		}
	}
	return false
}

// Handle applies CORS to r. It returns true when it answered a preflight
// itself (the request must not go further).
func (c *CORS) Handle(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !c.allowed(origin) {
		if preflight {
			w.WriteHeader(http.StatusOK)
			return true
		}
		return false
	}
	h := w.Header()
	if len(c.AllowOrigins) == 1 && c.AllowOrigins[0] == "*" && !c.AllowCredentials {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
	}
	if c.AllowCredentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
	if preflight {
		if len(c.AllowMethods) > 0 {
			h.Set("Access-Control-Allow-Methods", strings.Join(c.AllowMethods, ", "))
		}
		if len(c.AllowHeaders) > 0 {
			h.Set("Access-Control-Allow-Headers", strings.Join(c.AllowHeaders, ", "))
		}
		if c.MaxAge > 0 {
			h.Set("Access-Control-Max-Age", strconv.Itoa(int(c.MaxAge.Seconds())))
		}
		w.WriteHeader(http.StatusOK)
		return true
	}
	if len(c.ExposeHeaders) > 0 {
		h.Set("Access-Control-Expose-Headers", strings.Join(c.ExposeHeaders, ", "))
	}
	return false
}

var cors = module("cors", CrossOrigin,
	func(p *config.RoutePolicies) *config.CORS { return p.CORS },
	func(c *config.CORS, _ string, _ Compiler) Policy {
		return &CORS{AllowCredentials: c.AllowCredentials, AllowHeaders: c.AllowHeaders, AllowMethods: c.AllowMethods,
			AllowOrigins: c.AllowOrigins, ExposeHeaders: c.ExposeHeaders, MaxAge: c.MaxAge.D}
	})

// Run answers a preflight, or decorates the response and lets r through.
func (c *CORS) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	if c.Handle(w, r) {
		x.Note("cors preflight")
		return false
	}
	return true
}
