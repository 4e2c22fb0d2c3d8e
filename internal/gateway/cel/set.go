package cel

import "fmt"

// Rule is a compiled expression with its kind.
type Rule struct {
	Kind Kind
	*Expression
}

// Spec is an uncompiled rule as the config gives it.
type Spec struct {
	Kind  Kind
	Expr  string
	Where string
}

// Set is an ordered list of rules decided together (one
// networkAuthorization or authorization block).
type Set struct {
	Phase    Phase
	Rules    []Rule
	hasAllow bool
	warnings []string
}

// Warnings are load-time notes about rules that compile but probably do
// not mean what they say: a deny rule that reads a value the caller may
// not have denies every caller without it (see Decide). Each names the
// rule by its Where.
//
// Allow and require rules are not warned about: for them an error
// already means what false means (no allow; deny), in tailgate as in
// agentgateway, so a missing value changes nothing a reader would not
// expect.
func (s *Set) Warnings() []string {
	if s == nil {
		return nil
	}
	return s.warnings
}

// CompileSet compiles every rule; all failures are returned together.
func CompileSet(phase Phase, specs []Spec) (*Set, error) {
	s := &Set{Phase: phase}
	var errs []error
	for _, sp := range specs {
		switch sp.Kind {
		case Allow, Deny, Require:
		default:
			errs = append(errs, fmt.Errorf("%s: unknown rule kind %q", sp.Where, sp.Kind))
			continue
		}
		x, err := Compile(phase, sp.Where, sp.Expr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.Rules = append(s.Rules, Rule{Kind: sp.Kind, Expression: x})
		if sp.Kind == Deny {
			for _, p := range x.MayBeAbsent() {
				s.warnings = append(s.warnings, fmt.Sprintf(
					"%s: deny rule %q reads %s, which a caller may not have; when it is absent the rule errors and the request is denied (tailgate fails closed). If that is not meant, guard it: has(...) or default(%s, ...)",
					sp.Where, sp.Expr, p, p))
			}
		}
		if sp.Kind == Allow {
			s.hasAllow = true
		}
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return s, nil
}

// Verdict is the outcome of a Set, with the reason a person reads in the
// access log and the metrics label.
type Verdict struct {
	Allowed bool
	// Reason is a short stable label: "no rules", "allow rule matched",
	// "deny rule matched", "deny rule errored", "require rule failed",
	// "no allow rule matched", "no deny or require rule matched".
	Reason string
	// Rule is the deciding rule's Where, when one rule decided.
	Rule string
	// Err is the evaluation error of the deciding deny or require rule,
	// if any.
	Err error
}

// Decide applies the decision order in the package doc: agentgateway's,
// except that a deny rule that errors denies.
func (s *Set) Decide(vars Vars) Verdict {
	if s == nil || len(s.Rules) == 0 {
		return Verdict{Allowed: true, Reason: "no rules"}
	}
	// Deny and require first: their outcome does not depend on allows.
	for _, r := range s.Rules {
		switch r.Kind {
		case Deny:
			ok, err := r.EvalBool(vars)
			if err != nil {
				// Fail closed: a deny rule that cannot be evaluated (a
				// missing claim or header) must not let the caller through,
				// or removing a header would be a way around it.
				return Verdict{Reason: "deny rule errored", Rule: r.Where, Err: err}
			}
			if ok {
				return Verdict{Reason: "deny rule matched", Rule: r.Where}
			}
		case Require:
			if ok, err := r.EvalBool(vars); err != nil || !ok {
				return Verdict{Reason: "require rule failed", Rule: r.Where, Err: err}
			}
		}
	}
	for _, r := range s.Rules {
		if r.Kind == Allow {
			if ok, err := r.EvalBool(vars); err == nil && ok {
				return Verdict{Allowed: true, Reason: "allow rule matched", Rule: r.Where}
			}
		}
	}
	if s.hasAllow {
		return Verdict{Reason: "no allow rule matched"}
	}
	return Verdict{Allowed: true, Reason: "no deny or require rule matched"}
}

type errorList []error

func (l errorList) Error() string {
	s := ""
	for i, e := range l {
		if i > 0 {
			s += "\n"
		}
		s += e.Error()
	}
	return s
}

func (l errorList) Unwrap() []error { return l }

func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errorList(errs)
}
