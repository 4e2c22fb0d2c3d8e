package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"
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
		return apiErr(CodeUnsupportedMediaType, "send the request body as JSON with Content-Type: application/json")
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return apiErr(CodeUnsupportedMediaType, "the request body must be application/json")
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return apiErr(CodeUnsupportedMediaType, "the request body must be UTF-8 JSON")
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return apiErr(CodeBodyTooLarge, "the request body is larger than %d KiB", MaxBodyBytes>>10)
	}
	if err != nil {
		return apiErr(CodeInvalidJSON, "could not read the request body")
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return apiErr(CodeInvalidJSON, "the request body is empty; send a JSON object")
	}
	if !utf8.Valid(data) {
		return apiErr(CodeInvalidJSON, "the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return apiErr(CodeInvalidJSON, "the request body has data after the JSON object")
	}
	return nil
}

// jsonError describes a decoding failure without quoting the input.
func jsonError(err error) *Error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return apiErr(CodeInvalidJSON, "the request body is not valid JSON (at byte %d)", syn.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apiErr(CodeInvalidJSON, "the request body is not valid JSON (it ends early)")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return apiErr(CodeInvalidJSON, "the request body must be a JSON object")
		}
		return apiErr(CodeInvalidJSON, "field %q must be %s, not a JSON %s", typ.Field, jsonKind(typ.Type.Kind().String()), typ.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		name = strings.Trim(name, `"`)
		if quotableField.MatchString(name) && !credentialPattern.MatchString(name) {
			return apiErr(CodeInvalidJSON, "unknown field %q", name)
		}
		return apiErr(CodeInvalidJSON, "the request body has an unknown field (its name is not repeated here)")
	}
	return apiErr(CodeInvalidJSON, "the request body is not a valid JSON object")
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
