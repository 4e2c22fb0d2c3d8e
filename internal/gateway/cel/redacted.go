package cel

import (
	"fmt"
	"reflect"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// Redacted is a secret string as a CEL value (jwt.rawToken, as in
// agentgateway): it shows as "<redacted>" wherever it is printed,
// converted to a string, logged or put in toJson, and its text is read
// only with .unredacted() — so an access-log field or a rule that names
// it by mistake leaks nothing.
type Redacted string

// redactedShown is what a Redacted shows instead of its text.
const redactedShown = "<redacted>"

var redactedType = types.NewOpaqueType("redacted")

// ConvertToNative gives "<redacted>" for strings and interfaces.
func (r Redacted) ConvertToNative(t reflect.Type) (any, error) {
	if t.Kind() == reflect.String || t.Kind() == reflect.Interface {
		return redactedShown, nil
	}
	return nil, fmt.Errorf("a redacted value cannot become %v", t)
}

// ConvertToType gives "<redacted>" as a string.
func (r Redacted) ConvertToType(t ref.Type) ref.Val {
	switch t {
	case types.StringType:
		return types.String(redactedShown)
	case types.TypeType:
		return redactedType
	}
	return types.NewErr("a redacted value cannot become %s", t.TypeName())
}

// Equal compares two redacted values.
func (r Redacted) Equal(o ref.Val) ref.Val {
	x, ok := o.(Redacted)
	return types.Bool(ok && x == r)
}

// Type is the opaque type "redacted".
func (r Redacted) Type() ref.Type { return redactedType }

// Value is what a Go caller (a log field) sees: "<redacted>".
func (r Redacted) Value() any { return redactedShown }

// unredactedFunction is `<redacted>.unredacted()`: the secret's text.
func unredactedFunction() celgo.EnvOption {
	return celgo.Function("unredacted",
		celgo.MemberOverload("redacted_unredacted", []*celgo.Type{redactedType}, celgo.StringType,
			celgo.UnaryBinding(func(v ref.Val) ref.Val {
				if r, ok := v.(Redacted); ok {
					return types.String(r)
				}
				return types.NewErr("unredacted: not a redacted value")
			})))
}

// String, GoString and MarshalText keep the text out of fmt, slog and
// encoding/json too.
func (r Redacted) String() string   { return redactedShown }
func (r Redacted) GoString() string { return redactedShown }

// MarshalText gives "<redacted>".
func (r Redacted) MarshalText() ([]byte, error) { return []byte(redactedShown), nil }
