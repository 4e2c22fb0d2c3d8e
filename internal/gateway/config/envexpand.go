package config

import (
	"fmt"
	"os"
	"strings"

	"gopkg.in/yaml.v3"
)

// expandEnv replaces $NAME and ${NAME} in the file's values with the
// environment variable's value, as agentgateway expands its config
// (shellexpand) so that secrets can stay out of the file:
// `clientSecret: $KC_AGENT_SECRET`. A variable that is not set is an
// error at its line; a `$` not followed by a name stays as it is.
// Unlike agentgateway, comments and keys are left alone (a variable named
// only in a comment does not fail the load), a bare $name must be upper
// case to be a variable (so an inline OpenAPI or JSON Schema document's
// "$ref" and "$schema" stay as written; ${name} is always a variable),
// and a value that was unquoted is typed after expansion, so
// `port: $PORT` is a number.
//
// The expanded values live only in the decoded structs: the admin API's
// config dump reads the file as written.
func expandEnv(d *decoder, root *yaml.Node, lookup func(string) (string, bool)) {
	seen := map[*yaml.Node]bool{}
	var walk func(n *yaml.Node, path string)
	walk = func(n *yaml.Node, path string) {
		if n == nil || seen[n] {
			return
		}
		seen[n] = true
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.AliasNode:
			walk(n.Alias, path)
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", path, i))
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], join(path, n.Content[i].Value))
			}
		case yaml.ScalarNode:
			if !strings.Contains(n.Value, "$") {
				return
			}
			out, missing := expandValue(n.Value, lookup)
			for _, name := range missing {
				d.fail(n, path, "environment variable %s is not set", name)
			}
			if len(missing) > 0 || out == n.Value {
				return
			}
			if d.expanded == nil {
				d.expanded = map[*yaml.Node]string{}
			}
			d.expanded[n] = n.Value
			n.Value = out
			if n.Style == 0 && n.Tag == "!!str" {
				// Unquoted: type it as YAML would have, had the value been
				// written out (`port: $PORT` → !!int).
				var typed yaml.Node
				if yaml.Unmarshal([]byte(out), &typed) == nil && len(typed.Content) == 1 && typed.Content[0].Kind == yaml.ScalarNode {
					n.Tag = typed.Content[0].Tag
				}
			}
		}
	}
	walk(root, "")
}

// expandValue expands s, returning the names of unset variables.
func expandValue(s string, lookup func(string) (string, bool)) (string, []string) {
	var b strings.Builder
	var missing []string
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		name, end := "", i+1
		if s[i+1] == '{' {
			if j := strings.IndexByte(s[i+2:], '}'); j > 0 && isEnvName(s[i+2:i+2+j]) {
				name, end = s[i+2:i+2+j], i+2+j+1
			}
		} else {
			for end < len(s) && isEnvByte(s[end]) {
				end++
			}
			name = s[i+1 : end]
			if !upperEnvName(name) {
				// $ref, $schema: JSON Schema's words, not variables.
				name, end = "", i+1
			}
		}
		if name == "" {
			b.WriteByte('$')
			continue
		}
		v, ok := lookup(name)
		if !ok {
			missing = append(missing, name)
		}
		b.WriteString(v)
		i = end - 1
	}
	return b.String(), missing
}

func isEnvByte(c byte) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
}

// upperEnvName reports whether a bare $NAME is environment-variable
// style (upper case, digits, underscores, not starting with a digit).
func upperEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) {
			return false
		}
	}
	return true
}

func isEnvName(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isEnvByte(s[i]) {
			return false
		}
	}
	return s != ""
}

// osLookupEnv is the environment expandEnv reads.
var osLookupEnv = os.LookupEnv
