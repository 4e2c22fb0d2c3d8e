package config

import "fmt"

// ExtAuthzCache is extAuthz.cache: the service's answers kept under a
// key of CEL values (request phase), for a TTL computed after the answer
// (agentgateway's http/ext_authz.rs). An answer is cached only when
// every key value and the TTL can be computed.
type ExtAuthzCache struct {
	Pos Pos `yaml:"-"`
	// Key are CEL values; together they must capture everything the
	// service decides on, or callers share each other's answers.
	Key []string `yaml:"key,required"`
	// TTL is CEL (request phase, extauthz.* set): a duration, a
	// timestamp, or a number of Unix seconds at which the answer expires.
	// A duration literal such as "30s" is accepted too.
	TTL string `yaml:"ttl,required"`
	// MaxEntries bounds the cache; 0 means the default (10,000).
	MaxEntries int `yaml:"maxEntries"`
}

// Transformations is the transformations policy: request headers added,
// set (CEL values) and removed before the request is forwarded, and
// response headers likewise before the response is sent to the client.
type Transformations struct {
	Pos      Pos        `yaml:"-"`
	Request  *Transform `yaml:"request"`
	Response *Transform `yaml:"response"`

	Conditional Unsupported `yaml:"conditional"`
}

// Transform is one side's header changes; values are CEL.
type Transform struct {
	Pos    Pos          `yaml:"-"`
	Add    OrderedExprs `yaml:"add"`
	Set    OrderedExprs `yaml:"set"`
	Remove []string     `yaml:"remove"`

	Replace  Unsupported `yaml:"replace"`
	Body     Unsupported `yaml:"body"`
	Metadata Unsupported `yaml:"metadata"`
}

func (d *decoder) checkExtAuthzCache(c *ExtAuthzCache, path string) {
	if len(c.Key) == 0 && !d.hasErrorUnder(path+".key") {
		d.failAt(c.Pos, path+".key", "at least one key expression is required (an empty key caches nothing)")
	}
}

func (d *decoder) checkTransformations(t *Transformations, path string) {
	d.checkTransform(t.Request, path+".request", true)
	d.checkTransform(t.Response, path+".response", false)
}

// checkTransform checks one side's header names; pseudo is whether
// :method and :authority may be set (a request has them, a response not).
func (d *decoder) checkTransform(t *Transform, path string, pseudo bool) {
	if t == nil {
		return
	}
	for _, group := range []struct {
		name  string
		exprs OrderedExprs
	}{{"add", t.Add}, {"set", t.Set}} {
		for _, e := range group.exprs {
			if !validHeaderName(e.Name) && !(pseudo && (e.Name == ":method" || e.Name == ":authority")) {
				d.failAt(e.Pos, fmt.Sprintf("%s.%s.%s", path, group.name, e.Name), "not a header name")
			}
		}
	}
	for i, h := range t.Remove {
		if !validHeaderName(h) {
			d.failAt(t.Pos, fmt.Sprintf("%s.remove[%d]", path, i), "not a header name: %q", h)
		}
	}
}
