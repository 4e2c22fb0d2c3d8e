// Package expiring is a bounded, concurrency-safe map whose entries
// expire. The gateway keeps several caches of this one shape (verified
// JWTs, exchanged tokens and extAuthz answers in httppolicy; minted TLS
// leaves and WhoIs identities in gateway); they share this type so that
// "still fresh?" and "full: what goes?" are decided in one place.
//
// When the cache is full, a Put first drops what has expired and then
// arbitrary entries: a dropped entry costs the caller one more lookup
// (a signature check, a token exchange, a WhoIs), never a wrong answer.
package expiring

import (
	"sync"
	"time"
)

// Cache maps K to V until each entry's expiry, holding at most max
// entries. The zero value is not usable; call New.
type Cache[K comparable, V any] struct {
	mu      sync.Mutex
	max     int
	entries map[K]entry[V]
}

type entry[V any] struct {
	v       V
	expires time.Time
}

// New is an empty cache of at most max entries (max > 0).
func New[K comparable, V any](max int) *Cache[K, V] {
	return &Cache[K, V]{max: max, entries: map[K]entry[V]{}}
}

// Get is k's value if it is still valid at validAt (validAt is before the
// entry's expiry); an entry that is not is dropped.
func (c *Cache[K, V]) Get(k K, validAt time.Time) (V, bool) {
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

// Put keeps v under k until expires, replacing what k held; when the
// cache is full, entries no longer valid at validAt make room first.
func (c *Cache[K, V]) Put(k K, v V, expires, validAt time.Time) {
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
	c.entries[k] = entry[V]{v: v, expires: expires}
}
