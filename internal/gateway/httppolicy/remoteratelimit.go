package httppolicy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	ratelimitcommon "github.com/envoyproxy/go-control-plane/envoy/extensions/common/ratelimit/v3"
	rls "github.com/envoyproxy/go-control-plane/envoy/service/ratelimit/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/tailgate-dev/tailgate/internal/gateway/cel"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
)

// RemoteRateLimit asks a rate-limit service speaking Envoy's protocol
// (envoy.service.ratelimit.v3 RateLimitService/ShouldRateLimit, e.g.
// envoyproxy/ratelimit) whether a request is over a limit that all the
// gateway's replicas share. It follows agentgateway (crates/agentgateway/
// src/http/remoteratelimit.rs):
//
//   - each descriptor's entries are CEL values of the request; a
//     descriptor with an entry (or a cost, or a limit override) that cannot
//     be computed is left out, and with no descriptor left the service is
//     not asked;
//   - OVER_LIMIT answers 429 with the service's response headers, the
//     x-ratelimit-limit/-remaining/-reset headers of the most constrained
//     descriptor, and the service's raw body;
//   - OK adds the service's request headers to the request and its
//     response headers (and x-ratelimit-*) to the response;
//   - a service that cannot answer denies with 500 unless failureMode is
//     failOpen. agentgateway's default is failClosed too, which is also
//     tailgate's rule for anything that decides on access.
//
// It runs after authorization (as agentgateway orders it), so descriptors
// may use jwt.* and extauthz.*.
type RemoteRateLimit struct {
	Domain      string
	Descriptors []RemoteDescriptor
	FailOpen    bool
	// Timeout bounds one call to the service.
	Timeout time.Duration
	client  rls.RateLimitServiceClient
	conn    *grpc.ClientConn
}

// RemoteDescriptor is one descriptor: its entries' keys and CEL values,
// and optional cost and limit-override expressions.
type RemoteDescriptor struct {
	Keys          []string
	Values        []*cel.Expression
	Cost          *cel.Expression
	LimitOverride *cel.Expression
}

// remoteRateLimitTimeout bounds a call to the rate-limit service, so a
// stalled service costs a request 5 s, not its whole timeout.
const remoteRateLimitTimeout = 5 * time.Second

var remoteRateLimit = module("remoteRateLimit", GlobalRateLimiting,
	func(p *config.RoutePolicies) *config.RemoteRateLimit { return p.RemoteRateLimit },
	compileRemoteRateLimit)

func compileRemoteRateLimit(r *config.RemoteRateLimit, path string, c Compiler) Policy {
	out := &RemoteRateLimit{
		Domain:   r.Domain,
		FailOpen: strings.EqualFold(r.FailureMode, "failOpen"),
		Timeout:  remoteRateLimitTimeout,
	}
	for i, d := range r.Descriptors {
		dp := fmt.Sprintf("%s.descriptors[%d]", path, i)
		rd := RemoteDescriptor{}
		for j, e := range d.Entries {
			rd.Keys = append(rd.Keys, e.Key)
			rd.Values = append(rd.Values, c.Expression(cel.Request, e.Pos, fmt.Sprintf("%s.entries[%d].value", dp, j), e.Value))
		}
		if d.Cost != "" {
			rd.Cost = c.Expression(cel.Request, d.Pos, dp+".cost", d.Cost)
		}
		if d.LimitOverride != "" {
			rd.LimitOverride = c.Expression(cel.Request, d.Pos, dp+".limitOverride", d.LimitOverride)
		}
		out.Descriptors = append(out.Descriptors, rd)
	}
	conn, err := grpc.NewClient(r.Host, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		c.Fail(r.Pos, path+".host", err)
		return nil
	}
	// The connection is made on the first request; the snapshot closes it
	// when a reload replaces it.
	c.Own(conn)
	out.conn, out.client = conn, rls.NewRateLimitServiceClient(conn)
	return out
}

// Request builds the request to the service from vars, or returns nil
// when no descriptor could be computed (then the service is not asked).
func (rl *RemoteRateLimit) Request(vars cel.Vars) *rls.RateLimitRequest {
	req := &rls.RateLimitRequest{Domain: rl.Domain}
	for _, d := range rl.Descriptors {
		if rd, ok := d.build(vars); ok {
			req.Descriptors = append(req.Descriptors, rd)
		}
	}
	if len(req.Descriptors) == 0 {
		return nil
	}
	return req
}

func (d RemoteDescriptor) build(vars cel.Vars) (*ratelimitcommon.RateLimitDescriptor, bool) {
	out := &ratelimitcommon.RateLimitDescriptor{}
	for i, x := range d.Values {
		if x == nil {
			return nil, false // did not compile; the load reported it
		}
		v, err := x.EvalString(vars)
		if err != nil {
			return nil, false
		}
		out.Entries = append(out.Entries, &ratelimitcommon.RateLimitDescriptor_Entry{Key: d.Keys[i], Value: v})
	}
	if d.Cost != nil {
		v, err := d.Cost.Native(vars)
		n, ok := v.(int64)
		if err != nil || !ok || n < 0 {
			return nil, false
		}
		out.HitsAddend = wrapperspb.UInt64(uint64(n))
	}
	if d.LimitOverride != nil {
		lo, err := limitOverride(d.LimitOverride, vars)
		if err != nil {
			return nil, false
		}
		out.Limit = lo
	}
	return out, true
}

var rateLimitUnits = map[string]typev3.RateLimitUnit{
	"second": typev3.RateLimitUnit_SECOND,
	"minute": typev3.RateLimitUnit_MINUTE,
	"hour":   typev3.RateLimitUnit_HOUR,
	"day":    typev3.RateLimitUnit_DAY,
	"month":  typev3.RateLimitUnit_MONTH,
	"year":   typev3.RateLimitUnit_YEAR,
}

// limitOverride evaluates {"unit": ..., "requestsPerUnit": N}.
func limitOverride(x *cel.Expression, vars cel.Vars) (*ratelimitcommon.RateLimitDescriptor_RateLimitOverride, error) {
	v, err := x.Native(vars)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("limitOverride is not a map")
	}
	unitName, _ := m["unit"].(string)
	unit, ok := rateLimitUnits[strings.ToLower(unitName)]
	if !ok {
		return nil, fmt.Errorf("unknown unit %q", unitName)
	}
	n, ok := m["requestsPerUnit"].(int64)
	if !ok {
		n, ok = m["requests_per_unit"].(int64)
	}
	if !ok || n < 0 || n > 1<<32-1 {
		return nil, errors.New("requestsPerUnit is not a 32-bit unsigned number")
	}
	return &ratelimitcommon.RateLimitDescriptor_RateLimitOverride{RequestsPerUnit: uint32(n), Unit: unit}, nil
}

// Run asks the service and applies its answer.
func (rl *RemoteRateLimit) Run(w http.ResponseWriter, r *http.Request, x Exchange) bool {
	req := rl.Request(x.Vars())
	if req == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), rl.Timeout)
	defer cancel()
	resp, err := rl.client.ShouldRateLimit(ctx, req)
	if err != nil {
		if rl.FailOpen {
			x.Note("rate limit service unavailable, failure mode failOpen")
			return true
		}
		Deny(w, x, "remoteRateLimit", "rate limit service unavailable", http.StatusInternalServerError, "rate limit service unavailable")
		return false
	}
	if resp.GetOverallCode() == rls.RateLimitResponse_OVER_LIMIT {
		h := w.Header()
		addHeaderValues(h, resp.GetResponseHeadersToAdd())
		setRateLimitHeaders(h, resp.GetStatuses())
		x.Refuse("remoteRateLimit", "rate limited")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write(resp.GetRawBody())
		return false
	}
	addHeaderValues(r.Header, resp.GetRequestHeadersToAdd())
	h := w.Header()
	addHeaderValues(h, resp.GetResponseHeadersToAdd())
	setRateLimitHeaders(h, resp.GetStatuses())
	return true
}

// addHeaderValues sets the service's headers (a header it names replaces
// one of the same name, as in agentgateway); invalid ones are skipped.
func addHeaderValues(h http.Header, hv []*corev3.HeaderValue) {
	for _, v := range hv {
		val := string(v.GetRawValue())
		if val == "" {
			val = v.GetValue()
		}
		if val == "" || !httpguts.ValidHeaderFieldName(v.GetKey()) || !httpguts.ValidHeaderFieldValue(val) {
			continue
		}
		h.Set(v.GetKey(), val)
	}
}

// setRateLimitHeaders reports the most constrained descriptor (fewest
// requests remaining) as x-ratelimit-limit, -remaining and -reset
// (seconds), unless the service already set them.
func setRateLimitHeaders(h http.Header, statuses []*rls.RateLimitResponse_DescriptorStatus) {
	if h.Get("X-Ratelimit-Limit") != "" || h.Get("X-Ratelimit-Remaining") != "" || h.Get("X-Ratelimit-Reset") != "" {
		return
	}
	var best *rls.RateLimitResponse_DescriptorStatus
	for _, s := range statuses {
		if s.GetCurrentLimit() == nil {
			continue
		}
		if best == nil || s.GetLimitRemaining() < best.GetLimitRemaining() {
			best = s
		}
	}
	if best == nil {
		return
	}
	reset := max(best.GetDurationUntilReset().GetSeconds(), 0)
	h.Set("X-Ratelimit-Limit", strconv.FormatUint(uint64(best.GetCurrentLimit().GetRequestsPerUnit()), 10))
	h.Set("X-Ratelimit-Remaining", strconv.FormatUint(uint64(best.GetLimitRemaining()), 10))
	h.Set("X-Ratelimit-Reset", strconv.FormatInt(reset, 10))
}
