package httppolicy

import (
	"net/http"
	"sync"
	"time"

	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// RateLimit is a set of token buckets; a request needs a token from each.
type RateLimit struct {
	buckets []*bucket
}

type bucket struct {
	mu       sync.Mutex
	max      float64
	perFill  float64
	interval time.Duration
	tokens   float64
	last     time.Time
}

// BucketSpec is one bucket: it holds up to MaxTokens, and gains
// TokensPerFill (default 1) every FillInterval. It starts full.
type BucketSpec struct {
	MaxTokens     int64
	TokensPerFill int64
	FillInterval  time.Duration
}

// NewRateLimit builds the buckets.
func NewRateLimit(specs []BucketSpec) *RateLimit {
	rl := &RateLimit{}
	now := time.Now()
	for _, s := range specs {
		per := s.TokensPerFill
		if per <= 0 {
			per = 1
		}
		rl.buckets = append(rl.buckets, &bucket{max: float64(s.MaxTokens), perFill: float64(per), interval: s.FillInterval, tokens: float64(s.MaxTokens), last: now})
	}
	return rl
}

// Allow takes a token from every bucket, or from none.
func (rl *RateLimit) Allow() bool { return rl.allowAt(time.Now()) }

func (rl *RateLimit) allowAt(now time.Time) bool {
	for _, b := range rl.buckets {
		b.mu.Lock()
	}
	defer func() {
		for _, b := range rl.buckets {
			b.mu.Unlock()
		}
	}()
	for _, b := range rl.buckets {
		if el := now.Sub(b.last); el > 0 {
			b.tokens = min(b.max, b.tokens+b.perFill*float64(el)/float64(b.interval))
			b.last = now
		}
		if b.tokens < 1 {
			return false
		}
	}
	for _, b := range rl.buckets {
		b.tokens--
	}
	return true
}

var localRateLimit = module("localRateLimit", RateLimiting,
	func(p *config.RoutePolicies) *config.LocalRateLimit { return p.LocalRateLimit },
	func(rl *config.LocalRateLimit, _ string, _ Compiler) Policy {
		specs := make([]BucketSpec, 0, len(rl.Buckets))
		for _, b := range rl.Buckets {
			specs = append(specs, BucketSpec{MaxTokens: b.MaxTokens, TokensPerFill: b.TokensPerFill, FillInterval: b.FillInterval.D})
		}
		return NewRateLimit(specs)
	})

// Run refuses r with 429 when a bucket is empty.
func (rl *RateLimit) Run(w http.ResponseWriter, _ *http.Request, x Exchange) bool {
	if !rl.Allow() {
		Deny(w, x, "localRateLimit", "rate limited", http.StatusTooManyRequests, "rate limit exceeded")
		return false
	}
	return true
}
