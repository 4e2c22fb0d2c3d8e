package httppolicy

import (
	"testing"
	"time"
)

func TestRateLimitRefillsAtTheConfiguredRate(t *testing.T) {
	rl := NewRateLimit([]BucketSpec{{MaxTokens: 2, TokensPerFill: 1, FillInterval: time.Second}})
	t0 := rl.buckets[0].last
	got := []bool{rl.allowAt(t0), rl.allowAt(t0), rl.allowAt(t0)}
	if got[0] != true || got[1] != true || got[2] != false {
		t.Fatalf("burst: %v, want [true true false]", got)
	}
	if rl.allowAt(t0.Add(500 * time.Millisecond)) {
		t.Fatal("half an interval gave a whole token")
	}
	if !rl.allowAt(t0.Add(1100 * time.Millisecond)) {
		t.Fatal("one interval did not give a token")
	}
	if rl.allowAt(t0.Add(1200 * time.Millisecond)) {
		t.Fatal("bucket over-filled")
	}
	// A long pause refills only up to maxTokens.
	later := t0.Add(time.Hour)
	if !rl.allowAt(later) || !rl.allowAt(later) || rl.allowAt(later) {
		t.Fatal("refill exceeded maxTokens")
	}
}

func TestRateLimitNeedsEveryBucket(t *testing.T) {
	rl := NewRateLimit([]BucketSpec{
		{MaxTokens: 10, FillInterval: time.Second},
		{MaxTokens: 1, FillInterval: time.Hour},
	})
	now := rl.buckets[0].last
	if !rl.allowAt(now) || rl.allowAt(now) {
		t.Fatal("the strictest bucket must decide")
	}
	// The refused request took no token from the looser bucket.
	if rl.buckets[0].tokens != 9 {
		t.Fatalf("loose bucket has %v tokens, want 9", rl.buckets[0].tokens)
	}
}

func TestCORSOriginPatterns(t *testing.T) {
	c := &CORS{AllowOrigins: []string{"https://app.example.com", "https://*.dev.example.com"}}
	for origin, want := range map[string]bool{
		"https://app.example.com":        true,
		"https://a.dev.example.com":      true,
		"https://dev.example.com":        false,
		"https://a.dev.example.com.evil": false,
		"http://a.dev.example.com":       false,
		"https://evil.com":               false,
	} {
		if got := c.allowed(origin); got != want {
			t.Errorf("%s: %v, want %v", origin, got, want)
		}
	}
}

func TestJWKSFindSkipsSymmetricAndMismatchedKeys(t *testing.T) {
	k, err := NewJWKSInline(`{"keys":[{"kty":"oct","kid":"s","k":"c2VjcmV0"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if k.find("s", "HS256") != nil {
		t.Fatal("a symmetric key was offered for verification")
	}
	if _, err := NewJWKSInline(`not json`); err == nil {
		t.Fatal("bad inline JWKS accepted")
	}
}
