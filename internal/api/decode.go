package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"unicode/utf8"

	redactpkg "github.com/tailgate-dev/tailgate/internal/redact"

	"github.com/tailgate-dev/tailgate/internal/errcode"
)

// MaxBodyBytes is the largest request body the API reads. The biggest
// legitimate body, a connect with 64 targets, is a few KiB.
const MaxBodyBytes = 64 << 10

// decodeBody reads a JSON object request body into dst, strictly: the
// content type must be JSON, the body at most MaxBodyBytes of valid UTF-8,
// one object with only known fields. Its errors never quote the input,
// which may hold a Tailscale API token, except an unknown field's name
// when that name cannot be a credential.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any) error {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return apiErr(errcode.UnsupportedMediaType, "send the request body as JSON with Content-Type: application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return apiErr(errcode.UnsupportedMediaType, "the request body must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return apiErr(errcode.UnsupportedMediaType, "the request body must be UTF-8 JSON")
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return apiErr(errcode.BodyTooLarge, "the request body is larger than %d KiB", MaxBodyBytes>>10)
	}
	if err != nil {
		return apiErr(errcode.InvalidJSON, "could not read the request body")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return apiErr(errcode.InvalidJSON, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(data) {
		return apiErr(errcode.InvalidJSON, "the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiErr(errcode.InvalidJSON, "the request body has data after the JSON object")
	}
	return checkKeys(data, reflect.TypeOf(dst))
}

// checkKeys refuses what encoding/json accepts silently: a key twice in
// one object (the last would win: {"name":"a","name":"b"} is "b"), and a
// key that names a field only when case is ignored ({"NAME":"a"}). Both
// let two readers of one body disagree on what it says, so a body with
// either is refused. data is known to be valid JSON that decodes into t.
func checkKeys(data []byte, t reflect.Type) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return walkKeys(dec, t)
}

// walkKeys reads one JSON value from dec, checking the keys of every
// object in it against t, the Go type it decodes into (nil: unknown).
func walkKeys(dec *json.Decoder, t reflect.Type) error {
	tok, err := dec.Token()
	if err != nil {
		return apiErr(errcode.InvalidJSON, "the request body is not a valid JSON object")
	}
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch tok {
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for dec.More() {
			if err := walkKeys(dec, elem); err != nil {
				return err
			}
		}
		_, _ = dec.Token() // ']'
	case json.Delim('{'):
		var fields map[string]reflect.Type
		var elem reflect.Type
		if t != nil && t.Kind() == reflect.Struct {
			fields = jsonFields(t)
		} else if t != nil && t.Kind() == reflect.Map {
			elem = t.Elem()
		}
		seen := make(map[string]bool)
		for dec.More() {
			tok, err := dec.Token()
			key, ok := tok.(string)
			if err != nil || !ok {
				return apiErr(errcode.InvalidJSON, "the request body is not a valid JSON object")
			}
			if seen[key] {
				return apiErr(errcode.InvalidJSON, "%s appears more than once; send each field once", fieldForMessage(key))
			}
			seen[key] = true
			ft := elem
			if fields != nil {
				var known bool
				if ft, known = fields[key]; !known {
					for name := range fields {
						if strings.EqualFold(name, key) {
							return apiErr(errcode.InvalidJSON, "%s is not a field; field names are case-sensitive (%q)", fieldForMessage(key), name)
						}
					}
				}
			}
			if err := walkKeys(dec, ft); err != nil {
				return err
			}
		}
		_, _ = dec.Token() // '}'
	}
	return nil
}

// jsonFields maps the JSON names of a struct's fields, promoted fields of
// embedded structs included, to their types.
func jsonFields(t reflect.Type) map[string]reflect.Type {
	out := make(map[string]reflect.Type)
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		ft := f.Type
		if f.Anonymous && name == "" {
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				for n, typ := range jsonFields(ft) {
					if _, ok := out[n]; !ok {
						out[n] = typ
					}
				}
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = ft
	}
	return out
}

// fieldForMessage names a field in an error: quoted when it is short and
// plain enough to be a typo, never when it could be a pasted secret.
func fieldForMessage(name string) string {
	if quotableField.MatchString(name) && !redactpkg.HasCredential(name) {
		return fmt.Sprintf("field %q", name)
	}
	return "a field (its name is not repeated here)"
}

// jsonError describes a decoding failure without quoting the input.
func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return apiErr(errcode.InvalidJSON, "the request body is not valid JSON (at byte %d)", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiErr(errcode.InvalidJSON, "the request body is not valid JSON (it ends early)")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return apiErr(errcode.InvalidJSON, "the request body must be a JSON object")
		}
		return apiErr(errcode.InvalidJSON, "field %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if quotableField.MatchString(name) && !redactpkg.HasCredential(name) {
			return apiErr(errcode.InvalidJSON, "unknown field %q", name)
		}
		return apiErr(errcode.InvalidJSON, "the request body has an unknown field (its name is not repeated here)")
	}
	return apiErr(errcode.InvalidJSON, "the request body is not a valid JSON object")
}

// quotableField is a field name short and plain enough to be a typo of
// ours rather than a pasted secret, so an error may name it.
var quotableField = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,31}$`)

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "true or false"
	}
	return "a " + goKind
}
