package config

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Pos is where a value starts in the config file. Structs that embed a
// Pos field get it filled in, so later stages (rule compilation, backend
// checks) can point at the line a user has to fix.
type Pos struct {
	Line, Column int
}

// Unsupported marks a key that exists in agentgateway's schema but that
// tailgate does not implement yet. Its presence is a load error distinct
// from "unknown key": the file is not wrong, tailgate is incomplete.
type Unsupported struct{}

// Duration is a Go duration in the file ("500ms", "10s", "1m"). Load
// parses it once, when it checks the file: a value that does not parse
// is a load error, so later stages read D and never parse again.
type Duration struct {
	// Raw is the text as written; "" when the key is absent.
	Raw string
	// D is the parsed duration (0 when Raw is "").
	D time.Duration
}

// Error is one problem in a config file: where it is and what is wrong.
type Error struct {
	File   string // path of the file, empty when decoding bytes
	Path   string // YAML path, e.g. binds[0].listeners[0].routes[1].policies
	Line   int
	Column int
	Msg    string
}

func (e *Error) Error() string {
	return where(e.File, e.Line, e.Column, e.Path) + e.Msg
}

// where is the "file:line:col: path: " prefix every config error starts
// with, so Error and LimitError point at a place the same way. A part
// that is not known is left out.
func where(file string, line, col int, path string) string {
	var b strings.Builder
	if file != "" {
		b.WriteString(file)
		b.WriteByte(':')
	}
	if line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", line, col)
	} else if file != "" {
		b.WriteByte(' ')
	}
	if path != "" {
		b.WriteString(path)
		b.WriteString(": ")
	}
	return b.String()
}

// ErrorList is every problem found in one file, in file order.
type ErrorList []*Error

func (l ErrorList) Error() string {
	msgs := make([]string, len(l))
	for i, e := range l {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// nodeDecoder is implemented by config types whose YAML shape is a union
// (a string or an object, one of several keys) and so cannot be decoded
// by field name alone.
type nodeDecoder interface {
	decodeNode(d *decoder, n *yaml.Node, path string)
}

// decoder walks a yaml.Node tree into Go structs, strictly: every key must
// be a known field. It keeps going after an error so one run reports all
// problems in the file.
type decoder struct {
	file string
	errs ErrorList
	// named are the top-level backends: by name, for routes' backend:
	// references (gateways.go).
	named map[string]*NamedBackend
	// httpGateways are the references ("gw", "gw/listener") that name
	// HTTP gateway listeners, for tcpRoutes' errors.
	httpGateways map[string]bool
	// expanded are the values environment variables were expanded into,
	// with their text as written: an error shows "$NAME", never the
	// value (which may be a secret).
	expanded map[*yaml.Node]string
	// spiffe: config.spiffe is set, so tls.spiffe and backendTLS.spiffe
	// have an identity to use (spiffe.go).
	spiffe bool
}

const maxErrors = 50

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		return
	}
	msg := fmt.Sprintf(format, args...)
	if orig, ok := d.expanded[n]; ok && n.Value != "" {
		msg = strings.ReplaceAll(msg, n.Value, orig)
	}
	e := &Error{File: d.file, Path: path, Msg: msg}
	if n != nil {
		e.Line, e.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, e)
}

var (
	posType         = reflect.TypeOf(Pos{})
	unsupportedType = reflect.TypeOf(Unsupported{})
	durationType    = reflect.TypeOf(Duration{})
	decoderType     = reflect.TypeOf((*nodeDecoder)(nil)).Elem()
)

func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil
		}
		return resolve(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "an object"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "an unexpected value"
}

// decode fills v (addressable) from n.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	n = resolve(n)
	if n == nil {
		return
	}
	if v.Type() == durationType {
		d.decode(n, v.Field(0), path) // Raw; parsed once, in check.go
		return
	}
	if v.CanAddr() && v.Addr().Type().Implements(decoderType) {
		if isNull(n) {
			return
		}
		v.Addr().Interface().(nodeDecoder).decodeNode(d, n, path)
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		if isNull(n) {
			return
		}
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "expected a list, got %s", kindName(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		if isNull(n) {
			return
		}
		if n.Kind != yaml.MappingNode {
			d.fail(n, path, "expected an object, got %s", kindName(n))
			return
		}
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolve(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				d.fail(k, path, "keys must be strings")
				continue
			}
			ev := reflect.New(v.Type().Elem()).Elem()
			d.decode(n.Content[i+1], ev, join(path, k.Value))
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			d.fail(n, path, "expected a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" || err != nil {
			d.fail(n, path, "expected true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64, reflect.Uint64, reflect.Uint32, reflect.Int32:
		if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
			d.fail(n, path, "expected an integer, got %s", kindName(n))
			return
		}
		i, err := strconv.ParseInt(n.Value, 0, 64)
		if err != nil || i < 0 {
			d.fail(n, path, "expected a non-negative integer, got %s", kindName(n))
			return
		}
		if v.CanInt() {
			if v.OverflowInt(i) {
				d.fail(n, path, "integer %d is too large", i)
				return
			}
			v.SetInt(i)
		} else {
			if v.OverflowUint(uint64(i)) {
				d.fail(n, path, "integer %d is too large", i)
				return
			}
			v.SetUint(uint64(i))
		}
	default:
		d.fail(n, path, "internal error: cannot decode into %s", v.Type())
	}
}

type fieldInfo struct {
	index    []int
	required bool
}

// structFields maps t's YAML keys to its fields. An embedded struct tagged
// `yaml:",inline"` lends its keys to t (RoutePolicies has every key of
// GatewayPolicies).
func structFields(t reflect.Type) (map[string]fieldInfo, []string) {
	fields := map[string]fieldInfo{}
	var required []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("yaml")
		if tag == "" || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" && opts == "inline" && f.Anonymous && f.Type.Kind() == reflect.Struct {
			inner, req := structFields(f.Type)
			for k, fi := range inner {
				fields[k] = fieldInfo{index: append([]int{i}, fi.index...), required: fi.required}
			}
			required = append(required, req...)
			continue
		}
		fi := fieldInfo{index: []int{i}, required: opts == "required"}
		fields[name] = fi
		if fi.required {
			required = append(required, name)
		}
	}
	return fields, required
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected an object, got %s", kindName(n))
		return
	}
	t := v.Type()
	if f, ok := t.FieldByName("Pos"); ok && f.Type == posType {
		v.FieldByIndex(f.Index).Set(reflect.ValueOf(Pos{n.Line, n.Column}))
	}
	fields, required := structFields(t)
	blocks := policyKeys(t)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		if k.Kind != yaml.ScalarNode {
			d.fail(k, path, "keys must be strings")
			continue
		}
		key := k.Value
		kp := join(path, key)
		if key == "<<" {
			d.fail(k, kp, "YAML merge keys are not supported")
			continue
		}
		if seen[key] {
			d.fail(k, kp, "duplicate key")
			continue
		}
		seen[key] = true
		fi, ok := fields[key]
		if r, registered := blocks[key]; !ok && registered {
			d.decodeBlock(r, key, n.Content[i+1], v, kp)
			continue
		}
		if !ok {
			d.fail(k, kp, "unknown key%s", suggest(key, fields, blocks))
			continue
		}
		fv := v.FieldByIndex(fi.index)
		if fv.Type() == unsupportedType {
			if !isNull(resolve(n.Content[i+1])) {
				d.fail(k, kp, "not supported by tailgate yet")
			}
			continue
		}
		d.decode(n.Content[i+1], fv, kp)
	}
	for _, r := range required {
		if !seen[r] {
			d.fail(n, path, "missing required key %q", r)
		}
	}
}

// suggest names the known keys when a key is unknown, which turns most
// typos into a one-glance fix.
func suggest(key string, fields map[string]fieldInfo, blocks map[string]registeredPolicy) string {
	if len(blocks) > 0 {
		all := maps.Clone(fields)
		for k := range blocks {
			all[k] = fieldInfo{}
		}
		fields = all
	}
	var best string
	for k := range fields {
		if strings.EqualFold(k, key) {
			return fmt.Sprintf(" (did you mean %q?)", k)
		}
		if best == "" && len(key) > 3 && (strings.HasPrefix(strings.ToLower(k), strings.ToLower(key[:3]))) {
			best = k
		}
	}
	if best != "" {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	var names []string
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return " (this object takes no keys; write {})"
	}
	if len(names) > 12 {
		return ""
	}
	return fmt.Sprintf(" (expected one of: %s)", strings.Join(names, ", "))
}

// oneOfKeys checks that mapping n has exactly one of the given keys and
// returns it with its value node.
func (d *decoder) oneOfKeys(n *yaml.Node, path string, keys ...string) (string, *yaml.Node, bool) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "expected an object with one of %s, got %s", strings.Join(keys, ", "), kindName(n))
		return "", nil, false
	}
	var found string
	var val *yaml.Node
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := resolve(n.Content[i])
		known := false
		for _, want := range keys {
			if k.Value == want {
				known = true
			}
		}
		if !known {
			d.fail(k, join(path, k.Value), "unknown key (expected one of: %s)", strings.Join(keys, ", "))
			ok = false
			continue
		}
		if found != "" {
			d.fail(k, join(path, k.Value), "only one of %s may be set, %q is already set", strings.Join(keys, ", "), found)
			ok = false
			continue
		}
		found, val = k.Value, n.Content[i+1]
	}
	if found == "" && ok {
		d.fail(n, path, "expected one of: %s", strings.Join(keys, ", "))
		return "", nil, false
	}
	return found, val, ok && found != ""
}

// stringArm is one key of a union whose arms are all strings
// (`{exact: ...}` or `{regex: ...}`), with the field its value goes to.
type stringArm struct {
	key string
	set func(string)
}

// arm is a union key whose field is a plain string.
func arm(key string, field *string) stringArm {
	return stringArm{key, func(s string) { *field = s }}
}

// optArm is a union key whose field is an optional string (nil unless
// the key is the one set).
func optArm(key string, field **string) stringArm {
	return stringArm{key, func(s string) { *field = &s }}
}

// stringUnion decodes a union whose arms are all strings: a mapping with
// exactly one of arms' keys, or, when inline is not nil, a bare string
// stored in *inline. Errors are oneOfKeys's, so every such union reports
// a wrong key or a second key the same way.
func (d *decoder) stringUnion(n *yaml.Node, path string, inline *string, arms ...stringArm) {
	if inline != nil && n.Kind == yaml.ScalarNode {
		*inline = d.str(n, path)
		return
	}
	keys := make([]string, len(arms))
	for i, a := range arms {
		keys[i] = a.key
	}
	key, val, ok := d.oneOfKeys(n, path, keys...)
	if !ok {
		return
	}
	for _, a := range arms {
		if a.key == key {
			a.set(d.str(val, join(path, key)))
		}
	}
}

func (d *decoder) str(n *yaml.Node, path string) string {
	var s string
	d.decode(n, reflect.ValueOf(&s).Elem(), path)
	return s
}

var errNoDocument = errors.New("empty config file")
