package httppolicy

import (
	"sync"
	"time"
)

// expiringCache is a bounded map from a SHA-256 key to a value that
// expires: the verified-JWT, token-exchange and extAuthz caches. Keys are
// hashes so that a bearer token used as a key is not kept in a map. When
// full, a put first drops what has expired and then arbitrary entries: a
// miss costs one more check, never a wrong answer.
type expiringCache[V any] struct {
	mu      sync.Mutex
	max     int
	entries map[[32]byte]expiringEntry[V]
}

type expiringEntry[V any] struct {
	v       V
	expires time.Time
}

func newExpiringCache[V any](max int) *expiringCache[V] {
	return &expiringCache[V]{max: max, entries: map[[32]byte]expiringEntry[V]{}}
}

// get is k's value if it is still valid at validAt; an entry that is not
// is dropped.
func (c *expiringCache[V]) get(k [32]byte, validAt time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		var zero V
		return zero, false
	}
	if !validAt.Before(e.expires) {
		delete(c.entries, k)
		var zero V
		return zero, false
	}
	return e.v, true
}

// put keeps v under k until expires; when the cache is full, entries no
// longer valid at validAt make room first.
func (c *expiringCache[V]) put(k [32]byte, v V, expires, validAt time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for key, e := range c.entries {
			if !validAt.Before(e.expires) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = expiringEntry[V]{v: v, expires: expires}
}
