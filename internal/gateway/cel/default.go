package cel

import (
	"strings"

	celgo "github.com/google/cel-go/cel"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
)

// defaultFunction is agentgateway's default(value, fallback): value, or
// fallback when value cannot be resolved (a missing key, attribute or
// index). It is how a rule says "absent is fine" now that an erroring
// rule counts against the caller. Other errors (a type mismatch, a
// division by zero) are not swallowed: they are bugs in the rule, and
// hiding them would turn them into silent allows.
//
// The overload is non-strict so that it receives the error value of its
// first argument instead of the evaluation stopping there.
func defaultFunction() celgo.EnvOption {
	t := celgo.TypeParamType("T")
	return celgo.Function("default",
		celgo.Overload("default_T_T", []*celgo.Type{t, t}, t,
			celgo.OverloadIsNonStrict(),
			celgo.BinaryBinding(func(v, fallback ref.Val) ref.Val {
				if types.IsUnknown(v) || (types.IsError(v) && isMissing(v)) {
					return fallback
				}
				return v
			})))
}

// isMissing says whether an error value is a failed lookup. cel-go has no
// typed error for it, only these messages (interpreter/attributes.go and
// common/types/map.go).
func isMissing(v ref.Val) bool {
	msg := ""
	if e, ok := v.(*types.Err); ok {
		msg = e.String()
	} else {
		return false
	}
	for _, p := range []string{"no such key", "no such attribute", "index out of bounds"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}
