package config

import (
	"reflect"

	"gopkg.in/yaml.v3"
)

// Policy blocks declared by their policy.
//
// Most keys of a policies block are fields of GatewayPolicies or
// RoutePolicies. A policy module may instead declare its block type next
// to the code that compiles it and register the key here (RegisterPolicy,
// from a package-level var); config then decodes that key with the same
// strict decoder as every other one (positions, unknown-key errors with
// suggestions, Duration, union types) and keeps the result in the
// block's Blocks, where the module takes it (Block).

// Level is where a registered policy key may be written.
type Level int

const (
	// RouteLevel keys are accepted in a route's policies only.
	RouteLevel Level = iota + 1
	// ListenerLevel keys are accepted in a listener's policies and, like
	// every GatewayPolicies key, in a route's.
	ListenerLevel
)

// Blocks are the decoded blocks of registered policy keys, by key; each
// value is a pointer to the registered type.
type Blocks map[string]any

// Checker is implemented by a registered block type with checks beyond
// its shape (enums, durations). Check runs once the block is decoded.
type Checker interface {
	Check(c *Check, path string)
}

// Check is how a block's Check reports problems: at a position and YAML
// path, like every other config error, so one load lists them all.
type Check struct{ d *decoder }

// Fail reports a problem at p.
func (c *Check) Fail(p Pos, path, format string, args ...any) {
	c.d.failAt(p, path, format, args...)
}

// Duration parses v (see Duration), reporting a value that is not a
// positive duration, or a missing one unless optional.
func (c *Check) Duration(p Pos, path string, v *Duration, optional bool) {
	c.d.checkDuration(p, path, v, optional)
}

type registeredPolicy struct {
	typ   reflect.Type
	level Level
}

var registeredPolicies = map[string]registeredPolicy{}

// RegisterPolicy declares key, a policies key whose block decodes into a
// T, at level. It runs during package initialisation, before any config
// is read; registering a key twice, or one config declares itself, is a
// programming error and panics.
func RegisterPolicy[T any](key string, level Level) {
	if _, dup := registeredPolicies[key]; dup {
		panic("config: policy key registered twice: " + key)
	}
	if fields, _ := structFields(reflect.TypeFor[RoutePolicies]()); fields[key].index != nil {
		panic("config: policy key is a field of RoutePolicies: " + key)
	}
	registeredPolicies[key] = registeredPolicy{reflect.TypeFor[T](), level}
}

// Block is b's block for key, nil when the key is not set.
func Block[T any](b Blocks, key string) *T {
	v, _ := b[key].(*T)
	return v
}

var (
	gatewayPoliciesType = reflect.TypeFor[GatewayPolicies]()
	routePoliciesType   = reflect.TypeFor[RoutePolicies]()
)

// policyKeys are the registered keys a struct of type t accepts, with
// their field info for suggestions; nil for types that are not a
// policies block.
func policyKeys(t reflect.Type) map[string]registeredPolicy {
	var min Level
	switch t {
	case routePoliciesType:
		min = RouteLevel
	case gatewayPoliciesType:
		min = ListenerLevel
	default:
		return nil
	}
	keys := map[string]registeredPolicy{}
	for k, r := range registeredPolicies {
		if r.level >= min {
			keys[k] = r
		}
	}
	return keys
}

// decodeBlock decodes the registered key's value n into a new block of
// its type, stored in the Blocks of v (a GatewayPolicies or
// RoutePolicies). A null value sets nothing, as for a pointer field.
func (d *decoder) decodeBlock(r registeredPolicy, key string, n *yaml.Node, v reflect.Value, path string) {
	if isNull(resolve(n)) {
		return
	}
	block := reflect.New(r.typ)
	d.decode(n, block.Elem(), path)
	bv := v.FieldByName("Blocks")
	if bv.IsNil() {
		bv.Set(reflect.ValueOf(Blocks{}))
	}
	bv.SetMapIndex(reflect.ValueOf(key), block)
	if c, ok := block.Interface().(Checker); ok {
		c.Check(&Check{d}, path)
	}
}
