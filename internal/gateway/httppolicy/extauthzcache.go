package httppolicy

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"time"

	"github.com/google/cel-go/common/types"

	"github.com/tailgate-dev/tailgate/internal/expiring"
	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// ExtAuthzCache keeps an authorization service's answers (extAuthz.cache,
// agentgateway's semantics): allowing answers (their metadata and
// included headers) and 401/403 refusals, under a key of CEL values, for
// a TTL computed once the answer is known. A request whose key or TTL
// cannot be computed is neither served from nor stored in the cache. The
// key is kept as a SHA-256 of its values, so a bearer token used as a key
// is not a map key.
type ExtAuthzCache struct {
	Key []*cel.Expression
	// TTL is evaluated with extauthz.* set; FixedTTL is used instead when
	// the config gave a duration literal.
	TTL      *cel.Expression
	FixedTTL time.Duration
	Max      int

	outcomes *expiring.Cache[[32]byte, ExtAuthzOutcome]
	now      func() time.Time
}

// defaultExtAuthzCacheEntries is the cache's size when maxEntries is 0.
const defaultExtAuthzCacheEntries = 10_000

func compileExtAuthzCache(cc *config.ExtAuthzCache, path string, c Compiler) *ExtAuthzCache {
	out := &ExtAuthzCache{Max: cc.MaxEntries, now: time.Now}
	if out.Max <= 0 {
		out.Max = defaultExtAuthzCacheEntries
	}
	out.outcomes = expiring.New[[32]byte, ExtAuthzOutcome](out.Max)
	for i, k := range cc.Key {
		out.Key = append(out.Key, c.Expression(cel.Request, cc.Pos, fmt.Sprintf("%s.key[%d]", path, i), k))
	}
	if d, err := time.ParseDuration(cc.TTL); err == nil {
		if d <= 0 {
			c.Fail(cc.Pos, path+".ttl", errors.New("the TTL must be positive"))
		}
		out.FixedTTL = d
	} else {
		out.TTL = c.Expression(cel.Request, cc.Pos, path+".ttl", cc.TTL)
	}
	return out
}

// key computes the cache key for vars; false when a value cannot be
// computed (then the request is not cached).
func (c *ExtAuthzCache) key(vars cel.Vars) ([32]byte, bool) {
	h := sha256.New()
	for _, x := range c.Key {
		if x == nil {
			return [32]byte{}, false
		}
		v, err := x.Native(vars)
		if err != nil {
			return [32]byte{}, false
		}
		// Type-tagged JSON, length-prefixed: "1" and 1 are different keys.
		b, err := json.Marshal(v)
		if err != nil {
			return [32]byte{}, false
		}
		tag := fmt.Sprintf("%T", v)
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(tag)+len(b)))
		h.Write(n[:])
		io.WriteString(h, tag)
		h.Write(b)
	}
	var k [32]byte
	h.Sum(k[:0])
	return k, true
}

func (c *ExtAuthzCache) get(k [32]byte) (ExtAuthzOutcome, bool) {
	return c.outcomes.Get(k, c.now())
}

// ttl is how long out may be kept; vars are the request's, and out's
// metadata is extauthz.*.
func (c *ExtAuthzCache) ttl(vars cel.Vars, out ExtAuthzOutcome) (time.Duration, bool) {
	if c.TTL == nil {
		return c.FixedTTL, c.FixedTTL > 0
	}
	tv := make(cel.Vars, len(vars)+1)
	for k, v := range vars {
		tv[k] = v
	}
	md := out.Metadata
	if md == nil {
		md = map[string]any{}
	}
	tv["extauthz"] = md
	v, err := c.TTL.Eval(tv)
	if err != nil {
		return 0, false
	}
	now := c.now()
	var d time.Duration
	switch t := v.(type) {
	case types.Duration:
		d = t.Duration
	case types.Timestamp:
		d = t.Time.Sub(now)
	case types.Int:
		d = unixSecondsUntil(float64(t), now)
	case types.Uint:
		d = unixSecondsUntil(float64(t), now)
	case types.Double:
		d = unixSecondsUntil(float64(t), now)
	default:
		return 0, false
	}
	return d, d > 0
}

func unixSecondsUntil(at float64, now time.Time) time.Duration {
	if math.IsNaN(at) || math.IsInf(at, 0) || at <= 0 || at > 1<<40 {
		return 0
	}
	return time.Unix(0, int64(at*1e9)).Sub(now)
}

// put keeps out under k when it is cacheable: an allowing answer or a
// 401/403 refusal of the service (not a failure of the call).
func (c *ExtAuthzCache) put(k [32]byte, vars cel.Vars, out ExtAuthzOutcome) {
	if !out.Allowed && out.Status != http.StatusUnauthorized && out.Status != http.StatusForbidden {
		return
	}
	if out.Reason != "allowed" && out.Reason != "denied by service" {
		return // failure mode allow/deny: the service did not answer
	}
	d, ok := c.ttl(vars, out)
	if !ok {
		return
	}
	now := c.now()
	c.outcomes.Put(k, out, now.Add(d), now)
}
