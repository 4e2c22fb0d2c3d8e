// Package grants turns the targets an org admin types ("staging-box:443",
// "10.1.2.3:8443", "staging.internal.example.com:443") into the narrowest
// Tailscale grants that make them reachable, and writes those grants into
// the customer's tailnet policy file without disturbing anything else in it.
//
// # Overview
//
// Connecting an environment is three steps here, each a pure function with
// no network access (the caller fetches devices and the policy file; this
// package never talks to Tailscale):
//
//  1. [target.ParseList] checks what the admin typed and classifies each target
//     as a Tailscale IP, another (private) IP, a device name, or a DNS name.
//     Bad input comes back as a [*target.Error] naming the target and the
//     problem, ready for a 400 answer.
//
//  2. [NewPlan] maps the targets onto the tailnet ([TailnetView]: devices,
//     their addresses and subnet routes) following the design table:
//
//     Tailscale IP      → that address (/32 or /128)
//     device name       → that device's addresses
//     private IP        → that /32, warning if no approved route covers it
//     internal DNS name → every approved subnet route, with a warning,
//     because a policy cannot name a DNS host
//
//     Grants always carry the target's port ("tcp:443"), never "*", and are
//     grouped by port so the list is short and deterministic.
//
//  3. [Apply] adds the tag owner and grants to the policy (HuJSON), [Remove]
//     takes them out again, [Has] tells whether they are there, and
//     [Fragment] renders the same entries for customers whose policy is
//     managed from Git and who paste them in themselves.
//
// # How policy edits stay out of the customer's way
//
// The policy file is edited as a HuJSON syntax tree, never reformatted: the
// customer's comments, trailing commas, tabs and ordering survive byte for
// byte. Every entry tailgate adds carries the line comment
//
//	// tailgate:<env> managed by tailgate; do not edit
//
// directly above it, which is how a later Apply (connect again) or Remove
// (disconnect) finds exactly that environment's entries and nothing else.
// Entries go at the front of "tagOwners" and "grants" (on reconnect, where
// the env's previous entries were, so an unchanged plan rewrites nothing), a
// section tailgate had to create is marked too and removed with its last
// entry, so Remove(Apply(p, plan), env) returns p unchanged, byte for byte,
// and Apply is idempotent. The fuzz test FuzzApplyRemove guards that.
//
// # Usage
//
//	targets, err := target.ParseList([]string{"staging-box:443", "10.1.2.3:8443"})
//	if err != nil { /* 400: err is a *target.Error */ }
//	plan, err := grants.NewPlan("staging", targets, view) // view built from the API's devices
//	if err != nil { /* 400/409: unresolvable device, no approved routes, ... */ }
//	newPolicy, err := grants.Apply(oldPolicy, plan)    // then validate and write with If-Match
//	...
//	restored, err := grants.Remove(newPolicy, "staging") // on disconnect or rollback
//
// The package imports no Tailscale code: callers convert API types into
// [TailnetView] themselves.
package grants
