package config

import "fmt"

// RemoteRateLimit asks a rate-limit service speaking Envoy's protocol
// (envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit over gRPC,
// e.g. envoyproxy/ratelimit) whether a request is over a limit shared by
// every gateway replica. Semantics are agentgateway's
// (crates/agentgateway/src/http/remoteratelimit.rs): each descriptor's
// entries are CEL values; a descriptor with an entry that cannot be
// computed is left out, and no descriptor left means no call.
type RemoteRateLimit struct {
	Pos Pos `yaml:"-"`
	// Domain is the rate-limit service's configuration domain.
	Domain string `yaml:"domain,required"`
	// Host is the service's host:port (gRPC without TLS).
	Host        string                `yaml:"host"`
	Descriptors []RateLimitDescriptor `yaml:"descriptors,required"`
	// FailureMode is what happens when the service cannot answer:
	// failClosed (default, as in agentgateway: 500) or failOpen (the
	// request goes on).
	FailureMode string `yaml:"failureMode"`

	Service  Unsupported `yaml:"service"`
	Backend  Unsupported `yaml:"backend"`
	Policies Unsupported `yaml:"policies"`
}

// RateLimitDescriptor is one descriptor sent to the service.
type RateLimitDescriptor struct {
	Pos     Pos                        `yaml:"-"`
	Entries []RateLimitDescriptorEntry `yaml:"entries,required"`
	// Type is requests (default); tokens is for LLM backends.
	Type string `yaml:"type"`
	// Cost is a CEL number: how many hits the request counts for
	// (default 1). A cost that cannot be computed leaves the
	// descriptor out.
	Cost string `yaml:"cost"`
	// LimitOverride is a CEL map {"unit": "second"|..., "requestsPerUnit":
	// N} telling the service which limit to apply.
	LimitOverride string `yaml:"limitOverride"`
}

// RateLimitDescriptorEntry is a key and the CEL value computed for it.
type RateLimitDescriptorEntry struct {
	Pos   Pos    `yaml:"-"`
	Key   string `yaml:"key,required"`
	Value string `yaml:"value,required"`
}

func (d *decoder) checkRemoteRateLimit(r *RemoteRateLimit, path string) {
	if r.Host == "" && !d.hasErrorUnder(path) {
		d.failAt(r.Pos, path, "missing required key \"host\"")
	}
	switch r.FailureMode {
	case "", "failClosed", "FailClosed", "failOpen", "FailOpen":
	default:
		d.failAt(r.Pos, path+".failureMode", "expected failClosed or failOpen, got %q", r.FailureMode)
	}
	if len(r.Descriptors) == 0 && !d.hasErrorUnder(path+".descriptors") {
		d.failAt(r.Pos, path+".descriptors", "at least one descriptor is required")
	}
	for i, desc := range r.Descriptors {
		dp := fmt.Sprintf("%s.descriptors[%d]", path, i)
		switch desc.Type {
		case "", "requests":
		case "tokens":
			d.failAt(desc.Pos, dp+".type", "type tokens (LLM token budgets) is not supported by tailgate yet")
		default:
			d.failAt(desc.Pos, dp+".type", "expected requests or tokens, got %q", desc.Type)
		}
		if len(desc.Entries) == 0 && !d.hasErrorUnder(dp+".entries") {
			d.failAt(desc.Pos, dp+".entries", "a descriptor needs at least one entry")
		}
		for j, e := range desc.Entries {
			if e.Key == "" {
				d.failAt(e.Pos, fmt.Sprintf("%s.entries[%d].key", dp, j), "the key may not be empty")
			}
		}
	}
}
