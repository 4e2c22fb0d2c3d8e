package httppolicy

import (
	"bytes"
	"io"
	"os"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// discoveryOverride applies oidc.discovery (agentgateway's
// FileInlineOrRemote): a URL replaces the issuer's discovery URL and is
// fetched on first use like it; an inline or file document is read and
// checked now, so a wrong one fails the load. It reports false when it
// has reported a problem.
func (l *oidcLogin) discoveryOverride(d *config.JWKSSource, path string, c Compiler) bool {
	if d.URL != "" {
		l.discoveryURL = d.URL
		return true
	}
	doc, where := []byte(d.Inline), "inline document"
	if d.File != "" {
		b, err := os.ReadFile(c.Rel(d.File))
		if err != nil {
			c.Fail(d.Pos, path, err)
			return false
		}
		doc, where = b, d.File
	}
	p, err := l.parseDiscovery(io.LimitReader(bytes.NewReader(doc), 1<<20), where)
	if err != nil {
		c.Fail(d.Pos, path, err)
		return false
	}
	l.provider = p
	return true
}
