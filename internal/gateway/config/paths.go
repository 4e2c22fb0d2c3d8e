package config

import "fmt"

// Where a block stands in the file, for errors. Load turns other forms
// (gateways:, routes:, backends:, mcp:) into binds, listeners, routes and
// backends, and records in their YAMLPath where they were written; the
// methods below give that path when there is one, else the place under
// binds: the block now occupies, so that every check and the compile step
// name the same line the user wrote.

// PathAt is the path of the bind at binds[i].
func (b *Bind) PathAt(i int) string {
	if b.YAMLPath != "" {
		return b.YAMLPath
	}
	return fmt.Sprintf("binds[%d]", i)
}

// PathAt is the path of the listener at listeners[i] of the bind at
// path bind.
func (l *Listener) PathAt(bind string, i int) string {
	if l.YAMLPath != "" {
		return l.YAMLPath
	}
	return fmt.Sprintf("%s.listeners[%d]", bind, i)
}

// PathAt is the path of the route at routes[i] of the listener at path
// listener.
func (r *Route) PathAt(listener string, i int) string {
	if r.YAMLPath != "" {
		return r.YAMLPath
	}
	return fmt.Sprintf("%s.routes[%d]", listener, i)
}
