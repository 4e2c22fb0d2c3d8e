package expiring

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestGetIsValidUntilExpiry(t *testing.T) {
	c := New[string, int](4)
	c.Put("a", 1, t0.Add(time.Minute), t0)
	if v, ok := c.Get("a", t0.Add(59*time.Second)); !ok || v != 1 {
		t.Fatalf("before expiry: got %d, %v; want 1, true", v, ok)
	}
	if _, ok := c.Get("a", t0.Add(time.Minute)); ok {
		t.Fatal("at expiry the entry is still handed out")
	}
	// An expired entry is dropped, not only hidden.
	if _, ok := c.Get("a", t0); ok {
		t.Fatal("an entry found expired came back")
	}
	if _, ok := c.Get("missing", t0); ok {
		t.Fatal("a key never put was found")
	}
}

func TestPutReplaces(t *testing.T) {
	c := New[string, int](4)
	c.Put("a", 1, t0.Add(time.Minute), t0)
	c.Put("a", 2, t0.Add(time.Hour), t0)
	if v, ok := c.Get("a", t0.Add(30*time.Minute)); !ok || v != 2 {
		t.Fatalf("got %d, %v; want the second value, kept for its own expiry", v, ok)
	}
}

func TestFullCacheDropsExpiredFirst(t *testing.T) {
	c := New[int, int](3)
	c.Put(1, 1, t0.Add(time.Second), t0) // expired by the time 4 comes
	c.Put(2, 2, t0.Add(time.Hour), t0)
	c.Put(3, 3, t0.Add(time.Hour), t0)
	now := t0.Add(time.Minute)
	c.Put(4, 4, now.Add(time.Hour), now)
	for _, k := range []int{2, 3, 4} {
		if _, ok := c.Get(k, now); !ok {
			t.Errorf("key %d was dropped though an expired entry could make room", k)
		}
	}
}

func TestFullCacheStaysBounded(t *testing.T) {
	c := New[int, int](3)
	for k := range 10 {
		c.Put(k, k, t0.Add(time.Hour), t0)
	}
	if n := len(c.entries); n > 3 {
		t.Fatalf("%d entries in a cache of at most 3", n)
	}
	if v, ok := c.Get(9, t0); !ok || v != 9 {
		t.Fatalf("the newest entry is missing: %d, %v", v, ok)
	}
}
