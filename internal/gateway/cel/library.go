package cel

import (
	"bytes"
	"crypto/md5"
	crand "crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// library is the part of agentgateway's CEL function library
// (schema/cel.md) tailgate implements, beside default(): json, toJson,
// unvalidatedJwtPayload, random, uuid, fail, sha1/sha256/md5.encode,
// url.encode/decode, form.encode/decode, regexReplace and base64.encode
// of a string. Every overload
// is typed, so a call with the wrong argument types (json(1),
// "x".regexReplace(1, 2)) is a load error, not a run-time surprise.
func library() celgo.EnvOption {
	str, byts, dyn := celgo.StringType, celgo.BytesType, celgo.DynType
	mapSD := celgo.MapType(celgo.StringType, celgo.DynType)
	unary := func(f func(ref.Val) ref.Val) celgo.OverloadOpt { return celgo.UnaryBinding(f) }
	digest := func(name string, sum func([]byte) []byte) celgo.EnvOption {
		fn := func(v ref.Val) ref.Val { return types.String(hex.EncodeToString(sum(bytesOf(v)))) }
		return celgo.Function(name,
			celgo.Overload(strings.ReplaceAll(name, ".", "_")+"_string", []*celgo.Type{str}, str, unary(fn)),
			celgo.Overload(strings.ReplaceAll(name, ".", "_")+"_bytes", []*celgo.Type{byts}, str, unary(fn)))
	}
	return celgo.Lib(&lib{opts: []celgo.EnvOption{
		celgo.Function("json",
			celgo.Overload("json_string", []*celgo.Type{str}, dyn, unary(parseJSON)),
			celgo.Overload("json_bytes", []*celgo.Type{byts}, dyn, unary(parseJSON))),
		celgo.Function("toJson",
			celgo.Overload("toJson_dyn", []*celgo.Type{dyn}, str, unary(func(v ref.Val) ref.Val {
				b, err := json.Marshal(toNative(v))
				if err != nil {
					return types.NewErr("toJson: %v", err)
				}
				return types.String(b)
			}))),
		celgo.Function("unvalidatedJwtPayload",
			celgo.Overload("unvalidatedJwtPayload_string", []*celgo.Type{str}, mapSD, unary(func(v ref.Val) ref.Val {
				parts := strings.Split(string(v.(types.String)), ".")
				if len(parts) != 3 {
					return types.NewErr("unvalidatedJwtPayload: not a JWT")
				}
				b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
				if err != nil {
					return types.NewErr("unvalidatedJwtPayload: %v", err)
				}
				return parseJSON(types.Bytes(b))
			}))),
		celgo.Function("random",
			celgo.Overload("random", nil, celgo.DoubleType, celgo.FunctionBinding(func(...ref.Val) ref.Val {
				return types.Double(rand.Float64())
			}))),
		celgo.Function("uuid",
			celgo.Overload("uuid", nil, str, celgo.FunctionBinding(func(...ref.Val) ref.Val { return types.String(newUUID()) }))),
		celgo.Function("fail",
			celgo.Overload("fail_string", []*celgo.Type{str}, dyn, unary(func(v ref.Val) ref.Val {
				return types.NewErr("fail: %s", string(v.(types.String)))
			}))),
		digest("sha256.encode", func(b []byte) []byte { s := sha256.Sum256(b); return s[:] }),
		digest("sha1.encode", func(b []byte) []byte { s := sha1.Sum(b); return s[:] }),
		digest("md5.encode", func(b []byte) []byte { s := md5.Sum(b); return s[:] }),
		celgo.Function("url.encode",
			celgo.Overload("url_encode_string", []*celgo.Type{str}, str, unary(func(v ref.Val) ref.Val {
				return types.String(strings.ReplaceAll(url.QueryEscape(string(v.(types.String))), "+", "%20"))
			}))),
		celgo.Function("url.decode",
			celgo.Overload("url_decode_string", []*celgo.Type{str}, str, unary(func(v ref.Val) ref.Val {
				s, err := url.PathUnescape(string(v.(types.String)))
				if err != nil {
					return types.NewErr("url.decode: %v", err)
				}
				return types.String(s)
			}))),
		celgo.Function("form.encode",
			celgo.Overload("form_encode_map", []*celgo.Type{mapSD}, str, unary(func(v ref.Val) ref.Val {
				m, ok := toNative(v).(map[string]any)
				if !ok {
					return types.NewErr("form.encode: not a map")
				}
				keys := make([]string, 0, len(m))
				for k := range m {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				var parts []string
				for _, k := range keys {
					vals, isList := m[k].([]any)
					if !isList {
						vals = []any{m[k]}
					}
					for _, x := range vals {
						parts = append(parts, url.QueryEscape(k)+"="+url.QueryEscape(fmt.Sprint(x)))
					}
				}
				return types.String(strings.Join(parts, "&"))
			}))),
		// cel-go's base64.encode takes bytes; agentgateway's takes a
		// string too (its examples build Basic credentials with it).
		celgo.Function("base64.encode",
			celgo.Overload("base64_encode_string", []*celgo.Type{str}, str, unary(func(v ref.Val) ref.Val {
				return types.String(base64.StdEncoding.EncodeToString(bytesOf(v)))
			}))),
		celgo.Function("form.decode",
			celgo.Overload("form_decode_string", []*celgo.Type{str}, mapSD, unary(formDecode)),
			celgo.Overload("form_decode_bytes", []*celgo.Type{byts}, mapSD, unary(formDecode))),
		celgo.Function("regexReplace",
			celgo.MemberOverload("string_regexReplace_string_string", []*celgo.Type{str, str, str}, str,
				celgo.FunctionBinding(func(args ...ref.Val) ref.Val {
					re, err := cachedRegexp(string(args[1].(types.String)))
					if err != nil {
						return types.NewErr("regexReplace: %v", err)
					}
					return types.String(re.ReplaceAllString(string(args[0].(types.String)), string(args[2].(types.String))))
				}))),
	}})
}

type lib struct{ opts []celgo.EnvOption }

func (l *lib) CompileOptions() []celgo.EnvOption { return l.opts }
func (l *lib) ProgramOptions() []celgo.ProgramOption {
	return nil
}

func bytesOf(v ref.Val) []byte {
	switch t := v.(type) {
	case types.String:
		return []byte(t)
	case types.Bytes:
		return []byte(t)
	}
	return nil
}

// parseJSON decodes JSON; a number without fraction or exponent that
// fits is an int, as in agentgateway, so `json(b).exp - 5` is arithmetic
// on ints rather than a double-minus-int error.
func parseJSON(v ref.Val) ref.Val {
	dec := json.NewDecoder(bytes.NewReader(bytesOf(v)))
	dec.UseNumber()
	var out any
	if err := dec.Decode(&out); err != nil {
		return types.NewErr("json: %v", err)
	}
	if dec.More() {
		return types.NewErr("json: data after the value")
	}
	return types.DefaultTypeAdapter.NativeToValue(jsonNumbers(out))
}

// jsonNumbers replaces json.Number with int64 or float64.
func jsonNumbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []any:
		for i := range t {
			t[i] = jsonNumbers(t[i])
		}
	case map[string]any:
		for k := range t {
			t[k] = jsonNumbers(t[k])
		}
	}
	return v
}

func formDecode(v ref.Val) ref.Val {
	q, err := url.ParseQuery(string(bytesOf(v)))
	if err != nil {
		return types.NewErr("form.decode: %v", err)
	}
	out := map[string]any{}
	for k, vs := range q {
		if len(vs) == 1 {
			out[k] = vs[0]
		} else {
			l := make([]any, len(vs))
			for i, s := range vs {
				l[i] = s
			}
			out[k] = l
		}
	}
	return types.DefaultTypeAdapter.NativeToValue(out)
}

var regexpCache sync.Map // pattern → *regexp.Regexp

func cachedRegexp(p string) (*regexp.Regexp, error) {
	if re, ok := regexpCache.Load(p); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile(p)
	if err != nil {
		return nil, err
	}
	regexpCache.Store(p, re)
	return re, nil
}

func newUUID() string {
	var b [16]byte
	_, _ = cryptoRead(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var cryptoRead = crand.Read
