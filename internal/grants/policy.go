package grants

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/tailscale/hujson"
)

// containerMarker marks a "grants" or "tagOwners" section that tailgate had
// to create; Remove deletes such a section once its last entry is gone, so
// the customer's file comes back exactly as it was.
const containerMarker = "// tailgate: section added by tailgate; removed with its last tailgate entry"

// Marker is the line comment above every policy entry tailgate writes for
// env. It is how entries are found again; it must not be edited.
func Marker(env string) string {
	return "// tailgate:" + env + " managed by tailgate; do not edit"
}

// PolicyError reports a policy file tailgate cannot edit safely (not
// HuJSON, not an object, a section of the wrong type, duplicate sections).
// Nothing is changed when it is returned.
type PolicyError struct {
	Problem string
	Err     error // the HuJSON parse error, if any
}

func (e *PolicyError) Error() string {
	if e.Err != nil {
		return "policy file: " + e.Problem + ": " + e.Err.Error()
	}
	return "policy file: " + e.Problem
}

func (e *PolicyError) Unwrap() error { return e.Err }

// Apply returns policy with plan's entries added: the tag owner
// ("tag:tailgate-<env>": plan.TagOwners, normally ["autogroup:admin"]) at
// the front of "tagOwners"
// and one grant per port at the front of "grants", each under its
// [Marker] comment. Entries an earlier Apply wrote for the same env are
// replaced, other environments' entries and everything of the customer's
// stay as they are, byte for byte. A missing section is created at the end
// of the file (and removed again by [Remove]). If the customer already owns
// the tag in "tagOwners" themselves, their entry is kept and none added.
func Apply(policy []byte, plan Plan) ([]byte, error) {
	if err := checkPlan(plan); err != nil {
		return nil, err
	}
	// Reconnecting puts the new entries where the old ones were, so a
	// reconnect with an unchanged plan writes the same bytes even when
	// other environments' entries sit around ours.
	grantsAt, ownersAt, err := entryPositions(policy, plan.Env)
	if err != nil {
		return nil, err
	}
	base, err := Remove(policy, plan.Env)
	if err != nil {
		return nil, err
	}
	doc, root, err := parsePolicy(base)
	if err != nil {
		return nil, err
	}
	unit := rootIndent(root)
	nl := "\n"
	if bytes.Contains(base, []byte("\r\n")) {
		nl = "\r\n" // a Windows-edited file keeps its line endings
	}

	// tagOwners
	ownersIdx, err := findSection(root, "tagOwners", '{')
	if err != nil {
		return nil, err
	}
	owner := hujson.ObjectMember{
		Name:  hujson.Value{Value: hujson.String(plan.Tag)},
		Value: hujson.Value{BeforeExtra: hujson.Extra(" "), Value: mustParse(jsonList(tagOwners(plan)))},
	}
	if ownersIdx >= 0 {
		obj := root.Members[ownersIdx].Value.Value.(*hujson.Object)
		if !ownsTag(obj, plan.Tag) {
			var first []byte
			if len(obj.Members) > 0 {
				first = obj.Members[0].Name.BeforeExtra
			}
			owner.Name.BeforeExtra = markedExtra(elemIndent(first, unit+unit), Marker(plan.Env), nl)
			obj.Members = insertAt(obj.Members, ownersAt, []hujson.ObjectMember{owner}, memberValue)
		}
	} else {
		owner.Name.BeforeExtra = markedExtra(unit+unit, Marker(plan.Env), nl)
		appendSection(root, unit, nl, "tagOwners", &hujson.Object{Members: []hujson.ObjectMember{owner}, AfterExtra: hujson.Extra(nl + unit)})
	}

	// grants
	grantsIdx, err := findSection(root, "grants", '[')
	if err != nil {
		return nil, err
	}
	var entries []hujson.Value
	for _, g := range plan.Grants {
		v, err := hujson.Parse([]byte(renderGrant(g)))
		if err != nil {
			return nil, fmt.Errorf("render grant: %w", err)
		}
		entries = append(entries, v)
	}
	if grantsIdx >= 0 {
		arr := root.Members[grantsIdx].Value.Value.(*hujson.Array)
		ind := elemIndent(firstBefore(arr.Elements), unit+unit)
		for i := range entries {
			entries[i].BeforeExtra = markedExtra(ind, Marker(plan.Env), nl)
		}
		arr.Elements = insertAt(arr.Elements, grantsAt, entries, func(v *hujson.Value) *hujson.Value { return v })
	} else {
		for i := range entries {
			entries[i].BeforeExtra = markedExtra(unit+unit, Marker(plan.Env), nl)
		}
		appendSection(root, unit, nl, "grants", &hujson.Array{Elements: entries, AfterExtra: hujson.Extra(nl + unit)})
	}

	out := doc.Pack()
	// Never hand back a file we could not undo: check the round trip now
	// rather than at disconnect time.
	back, err := Remove(out, plan.Env)
	if err != nil || !bytes.Equal(back, base) {
		return nil, &PolicyError{Problem: "tailgate's entries could not be added in a way that can be removed again cleanly; edit the policy by hand with Fragment"}
	}
	return out, nil
}

// Remove returns policy without the entries tailgate wrote for env (see
// [Apply]), and without a section tailgate created once it holds nothing
// else. Everything else is kept byte for byte: Remove(Apply(p, plan), env)
// is p. A policy with no entries for env comes back unchanged.
func Remove(policy []byte, env string) ([]byte, error) {
	if !ValidEnvName(env) {
		return nil, &EnvError{Env: env}
	}
	doc, root, err := parsePolicy(policy)
	if err != nil {
		return nil, err
	}
	changed := false
	marker := Marker(env)
	for _, name := range []string{"grants", "tagOwners"} {
		idx, err := findSection(root, name, 0)
		if err != nil {
			return nil, err
		}
		if idx < 0 {
			continue
		}
		removed := 0
		switch c := root.Members[idx].Value.Value.(type) {
		case *hujson.Array:
			for i := len(c.Elements) - 1; i >= 0; i-- {
				if hasLine(c.Elements[i].BeforeExtra, marker) {
					c.Elements = removeElem(c.Elements, i, func(v *hujson.Value) *hujson.Value { return v })
					removed++
				}
			}
			if removed > 0 && len(c.Elements) == 0 && isCreatedSection(root.Members[idx]) {
				root.Members = removeElem(root.Members, idx, memberValue)
			}
		case *hujson.Object:
			for i := len(c.Members) - 1; i >= 0; i-- {
				if hasLine(c.Members[i].Name.BeforeExtra, marker) {
					c.Members = removeElem(c.Members, i, memberValue)
					removed++
				}
			}
			if removed > 0 && len(c.Members) == 0 && isCreatedSection(root.Members[idx]) {
				root.Members = removeElem(root.Members, idx, memberValue)
			}
		}
		changed = changed || removed > 0
	}
	if !changed {
		return bytes.Clone(policy), nil
	}
	return doc.Pack(), nil
}

// Has reports whether policy holds entries tailgate wrote for env: whether
// Remove would take anything out, which is how it finds them.
func Has(policy []byte, env string) (bool, error) {
	out, err := Remove(policy, env)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(out, policy), nil
}

// Fragment renders plan's entries as HuJSON for a customer whose policy is
// managed from Git (the tailnet setting aclsExternallyManagedOn), who must
// paste them in instead of tailgate writing them. The text is the two
// sections' entries under their markers, so a later Apply or Remove on the
// pasted file finds them like its own.
func Fragment(plan Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "// tailgate: entries for environment %q. Merge them into the sections of the\n", plan.Env)
	b.WriteString("// same name in your tailnet policy file (create a section if you have none).\n")
	b.WriteString("\"tagOwners\": {\n")
	fmt.Fprintf(&b, "\t%s\n\t%q: %s,\n", Marker(plan.Env), plan.Tag, jsonList(tagOwners(plan)))
	b.WriteString("},\n\"grants\": [\n")
	for _, g := range plan.Grants {
		fmt.Fprintf(&b, "\t%s\n\t%s,\n", Marker(plan.Env), renderGrant(g))
	}
	b.WriteString("],\n")
	return b.String()
}

func checkPlan(p Plan) error {
	if !ValidEnvName(p.Env) {
		return &EnvError{Env: p.Env}
	}
	if p.Tag != TagFor(p.Env) {
		return fmt.Errorf("plan for %q carries tag %q, want %q: build plans with NewPlan", p.Env, p.Tag, TagFor(p.Env))
	}
	if len(p.Grants) == 0 {
		return fmt.Errorf("plan for %q has no grants: build plans with NewPlan", p.Env)
	}
	for _, o := range p.TagOwners {
		if o == "" || strings.ContainsFunc(o, func(r rune) bool { return r < 0x21 || r == '"' || r == '\\' || r > 0x7e }) {
			return fmt.Errorf("plan for %q has tag owner %q, which is not a user, group, tag or autogroup", p.Env, o)
		}
	}
	for _, g := range p.Grants {
		if len(g.Dst) == 0 || len(g.IP) == 0 {
			return fmt.Errorf("plan for %q has a grant without destination or port", p.Env)
		}
		for _, ip := range g.IP {
			if ip == "*" || strings.HasSuffix(ip, ":*") {
				return fmt.Errorf("plan for %q grants every port (%q); tailgate grants exact ports only", p.Env, ip)
			}
		}
		for _, d := range g.Dst {
			if d == "*" || strings.HasSuffix(d, "/0") {
				return fmt.Errorf("plan for %q grants %q, which is every address", p.Env, d)
			}
		}
	}
	return nil
}

func parsePolicy(policy []byte) (*hujson.Value, *hujson.Object, error) {
	// Parse aliases its input; work on a copy so the caller's bytes are
	// never touched by the edits.
	v, err := hujson.Parse(bytes.Clone(policy))
	if err != nil {
		return nil, nil, &PolicyError{Problem: "not valid HuJSON", Err: err}
	}
	root, ok := v.Value.(*hujson.Object)
	if !ok {
		return nil, nil, &PolicyError{Problem: "the top level is not an object ({...})"}
	}
	return &v, root, nil
}

// findSection finds the root member called name. Tailscale reads policy
// keys case-insensitively ("TagOwners" is "tagOwners"), so the match is too;
// two members that match are refused, as is a member of the wrong type
// (kind '[' or '{'; 0 accepts either). It returns -1 if there is none.
func findSection(root *hujson.Object, name string, kind hujson.Kind) (int, error) {
	idx := -1
	for i, m := range root.Members {
		lit, ok := m.Name.Value.(hujson.Literal)
		if !ok || !strings.EqualFold(lit.String(), name) {
			continue
		}
		if idx >= 0 {
			return -1, &PolicyError{Problem: fmt.Sprintf("%q appears twice at the top level; merge them first", name)}
		}
		idx = i
	}
	if idx < 0 {
		return -1, nil
	}
	got := root.Members[idx].Value.Value.Kind()
	want := kind
	if want == 0 {
		want = map[string]hujson.Kind{"grants": '[', "tagOwners": '{'}[name]
	}
	if got != want {
		what := map[hujson.Kind]string{'[': "an array", '{': "an object"}[want]
		return -1, &PolicyError{Problem: fmt.Sprintf("%q is not %s", name, what)}
	}
	return idx, nil
}

// appendSection adds a new root member at the end, marked as created by
// tailgate. It follows the file's trailing-comma habit so that removing it
// later restores the habit too (see removeElem).
func appendSection(root *hujson.Object, unit, nl, name string, v hujson.ValueTrimmed) {
	m := hujson.ObjectMember{
		Name:  hujson.Value{BeforeExtra: markedExtra(unit, containerMarker, nl), Value: hujson.String(name)},
		Value: hujson.Value{BeforeExtra: hujson.Extra(" "), Value: v},
	}
	if n := len(root.Members); n > 0 && root.Members[n-1].Value.AfterExtra != nil {
		m.Value.AfterExtra = hujson.Extra{}
	}
	root.Members = append(root.Members, m)
}

func isCreatedSection(m hujson.ObjectMember) bool {
	return hasLine(m.Name.BeforeExtra, containerMarker)
}

func ownsTag(obj *hujson.Object, tag string) bool {
	for _, m := range obj.Members {
		if lit, ok := m.Name.Value.(hujson.Literal); ok && lit.String() == tag {
			return true
		}
	}
	return false
}

// entryPositions finds where env's first grant and tag owner sit, counted
// among the entries that are not env's (so the index is valid once they are
// removed); 0 (the front) if there are none.
func entryPositions(policy []byte, env string) (grantsAt, ownersAt int, err error) {
	if !ValidEnvName(env) {
		return 0, 0, &EnvError{Env: env}
	}
	_, root, err := parsePolicy(policy)
	if err != nil {
		return 0, 0, err
	}
	marker := Marker(env)
	if idx, err := findSection(root, "grants", '['); err != nil {
		return 0, 0, err
	} else if idx >= 0 {
		for i, e := range root.Members[idx].Value.Value.(*hujson.Array).Elements {
			if hasLine(e.BeforeExtra, marker) {
				grantsAt = i
				break
			}
		}
	}
	if idx, err := findSection(root, "tagOwners", '{'); err != nil {
		return 0, 0, err
	} else if idx >= 0 {
		for i, m := range root.Members[idx].Value.Value.(*hujson.Object).Members {
			if hasLine(m.Name.BeforeExtra, marker) {
				ownersAt = i
				break
			}
		}
	}
	return grantsAt, ownersAt, nil
}

// insertAt inserts items before element i (clamped to the end). Inserting
// at the end moves the trailing comma habit from the old last element to
// the new one, mirroring removeElem.
func insertAt[T any](s []T, i int, items []T, value func(*T) *hujson.Value) []T {
	if i >= len(s) {
		i = len(s)
		if i > 0 && value(&s[i-1]).AfterExtra != nil && len(items) > 0 {
			value(&items[len(items)-1]).AfterExtra = hujson.Extra{}
		}
	}
	out := make([]T, 0, len(s)+len(items))
	out = append(out, s[:i]...)
	out = append(out, items...)
	return append(out, s[i:]...)
}

func memberValue(m *hujson.ObjectMember) *hujson.Value { return &m.Value }

// removeElem deletes element i. If i was the last of several, the new last
// element takes over its trailing comma: HuJSON records a trailing comma on
// the last value, and without this a file that had one would lose it.
func removeElem[T any](s []T, i int, value func(*T) *hujson.Value) []T {
	if i == len(s)-1 && i > 0 {
		if value(&s[i]).AfterExtra != nil && value(&s[i-1]).AfterExtra == nil {
			value(&s[i-1]).AfterExtra = hujson.Extra{}
		}
	}
	return append(s[:i], s[i+1:]...)
}

// markedExtra is the whitespace and marker comment placed before an entry.
func markedExtra(indent, marker, nl string) hujson.Extra {
	return hujson.Extra(nl + indent + marker + nl + indent)
}

// hasLine reports whether extra holds line as a whole line comment,
// whichever line ending the file uses (an editor may have changed it).
func hasLine(extra []byte, line string) bool {
	return bytes.Contains(extra, []byte(line+"\n")) || bytes.Contains(extra, []byte(line+"\r\n"))
}

// rootIndent guesses the file's indentation unit from its first top-level
// member ("\t" if it has none or is on one line).
func rootIndent(root *hujson.Object) string {
	if len(root.Members) > 0 {
		if ind, ok := lastLineIndent(root.Members[0].Name.BeforeExtra); ok && ind != "" {
			return ind
		}
	}
	return "\t"
}

// elemIndent is the indentation of the entry whose leading extra is before,
// or def if that entry does not start on its own line.
func elemIndent(before []byte, def string) string {
	if ind, ok := lastLineIndent(before); ok {
		return ind
	}
	return def
}

func firstBefore(elems []hujson.Value) []byte {
	if len(elems) == 0 {
		return nil
	}
	return elems[0].BeforeExtra
}

// lastLineIndent returns the spaces and tabs after the last newline of
// extra, if extra has a newline and nothing but spaces and tabs follows it.
func lastLineIndent(extra []byte) (string, bool) {
	i := bytes.LastIndexByte(extra, '\n')
	if i < 0 {
		return "", false
	}
	tail := extra[i+1:]
	if len(bytes.Trim(tail, " \t")) != 0 {
		return "", false
	}
	return string(tail), true
}

func renderGrant(g Grant) string {
	return fmt.Sprintf(`{"src": %s, "dst": %s, "ip": %s}`, jsonList(g.Src), jsonList(g.Dst), jsonList(g.IP))
}

// jsonList renders strings as a one-line JSON array with a space after
// each comma, the way people write them in policy files.
func jsonList(ss []string) string {
	b, _ := json.Marshal(ss)
	return strings.ReplaceAll(string(b), `","`, `", "`)
}

func tagOwners(p Plan) []string {
	if len(p.TagOwners) == 0 {
		return DefaultTagOwners
	}
	return p.TagOwners
}

func mustParse(s string) hujson.ValueTrimmed {
	v, err := hujson.Parse([]byte(s))
	if err != nil {
		panic(err)
	}
	return v.Value
}

// IsPolicyError reports whether err means the policy file itself could not
// be edited (as opposed to a bad plan or env).
func IsPolicyError(err error) bool {
	var pe *PolicyError
	return errors.As(err, &pe)
}
