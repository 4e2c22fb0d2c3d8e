// Package redact removes secrets from text that leaves tailgate: errors,
// logs, API answers. It is the one place that knows what a credential
// looks like, so every package redacts the same things the same way.
package redact

import (
	"regexp"
	"strings"
)

// Mark replaces every secret removed.
const Mark = "[redacted]"

// credential matches anything shaped like a credential tailgate handles:
// Tailscale's (API token, OAuth client secret, auth key: tskey-...),
// headscale's (API key, pre-auth key: hskey-...) and tailgate's own API
// tokens (tg_...) and webhook signing secrets (tgwhsec_...). A help text's "tskey-api-..." is not one.
var credential = regexp.MustCompile(`(?:tskey|hskey)-[A-Za-z0-9]+-[A-Za-z0-9_-]{4,}|(?:tskey|hskey)-[A-Za-z0-9_]{16,}|tg_[a-z2-7]{16,}|tgwhsec_[a-z2-7]{16,}`)

// Secrets returns s without the given secrets (verbatim, when at least 4
// bytes long; shorter ones would erase ordinary words) and without
// anything shaped like a credential.
func Secrets(s string, secrets ...string) string {
	for _, sec := range secrets {
		if len(sec) >= 4 {
			s = strings.ReplaceAll(s, sec, Mark)
		}
	}
	return credential.ReplaceAllString(s, Mark)
}

// HasCredential reports whether s holds anything shaped like a
// credential, for callers that would rather not echo s at all.
func HasCredential(s string) bool { return credential.MatchString(s) }

// FindCredential returns the first credential-shaped text in b, or nil.
func FindCredential(b []byte) []byte { return credential.Find(b) }
