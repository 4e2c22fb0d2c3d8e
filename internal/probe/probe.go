// Package probe checks one target through a tailnet node, step by step:
// DNS through the tailnet, TCP through the tailnet only, TLS (with the
// certificate's names, issuer and expiry) and HTTP, stopping at the first
// step that fails, and gives each step a verdict and a hint a person can
// act on. Verify uses it for every target of an environment; a run's
// diagnostics and the web console can use it for one.
package probe

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/tailgate-dev/tailgate/internal/tailnet"
	"github.com/tailgate-dev/tailgate/internal/target"
)

// Verdicts a target can get; each comes with a hint.
const (
	VerdictReachable    = "reachable"
	VerdictNameNotFound = "name not found in the tailnet's DNS"
	VerdictNotRouted    = "route not approved"
	VerdictRefused      = "connection refused"
	VerdictTimeout      = "timeout"
	VerdictTLSMismatch  = "TLS name mismatch"
	VerdictTLSExpired   = "TLS certificate expired"
	VerdictTLSFailed    = "TLS handshake failed"
	VerdictNoHTTP       = "reachable (TCP); no HTTP response"
)

// stepTimeout bounds each step.
const stepTimeout = 8 * time.Second

// Result is the verdict for one target and the steps behind it.
type Result struct {
	Target  string `json:"target"`
	OK      bool   `json:"ok"`
	Verdict string `json:"verdict"`
	Hint    string `json:"hint,omitempty"`
	Steps   []Step `json:"steps"`
}

// Step returns the named step (dns, tcp, tls, http), if it ran.
func (r Result) Step(name string) *Step {
	for i := range r.Steps {
		if r.Steps[i].Name == name {
			return &r.Steps[i]
		}
	}
	return nil
}

// Step is one step of checking a target: dns, tcp, tls or http.
type Step struct {
	Name       string   `json:"name"`
	OK         bool     `json:"ok"`
	Verdict    string   `json:"verdict"`
	Detail     string   `json:"detail,omitempty"`
	Hint       string   `json:"hint,omitempty"`
	DurationMS float64  `json:"duration_ms"`
	Addresses  []string `json:"addresses,omitempty"`
	TLS        *TLSInfo `json:"tls,omitempty"`
	HTTPStatus int      `json:"http_status,omitempty"`
}

// TLSInfo describes the certificate a target presented.
type TLSInfo struct {
	SNI        string    `json:"sni"`
	Names      []string  `json:"names"`
	Issuer     string    `json:"issuer"`
	NotAfter   time.Time `json:"not_after"`
	SelfSigned bool      `json:"self_signed"`
	NameMatch  bool      `json:"name_match"`
}

// Dialer is what a target check needs from a tailnet node.
type Dialer interface {
	LookupNetIP(ctx context.Context, host string) ([]netip.Addr, error)
	DialTCP(ctx context.Context, dst netip.AddrPort) (net.Conn, error)
	// WarmPath readies the path to dst so the first dial does not stall.
	WarmPath(ctx context.Context, dst netip.Addr) error
}

// Check runs the dns → tcp → tls → http steps for one target through
// the node, stopping at the first failing step.
func Check(ctx context.Context, node Dialer, t target.Target) Result {
	r := Result{Target: t.String(), Steps: []Step{}}
	fail := func(st Step) Result {
		r.Steps = append(r.Steps, st)
		r.Verdict, r.Hint = st.Verdict, st.Hint
		return r
	}

	// DNS, through the tailnet.
	var addr netip.Addr
	if t.Addr.IsValid() {
		addr = t.Addr
		r.Steps = append(r.Steps, Step{Name: "dns", OK: true, Verdict: "IP address, nothing to resolve", Addresses: []string{addr.String()}})
	} else {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, stepTimeout)
		addrs, err := node.LookupNetIP(dctx, t.Host)
		cancel()
		st := Step{Name: "dns", DurationMS: ms(time.Since(start))}
		if err != nil {
			st.Verdict = VerdictNameNotFound
			st.Detail = err.Error()
			st.Hint = fmt.Sprintf("%s does not resolve through the tailnet: check that the tailnet's split DNS sends its zone to your internal resolver (admin console → DNS), and that the resolver is reachable through an approved route; or target an IP or device name", t.Host)
			return fail(st)
		}
		st.OK, st.Verdict = true, "resolved"
		for _, a := range addrs {
			st.Addresses = append(st.Addresses, a.String())
		}
		r.Steps = append(r.Steps, st)
		addr = addrs[0]
		for _, a := range addrs {
			if a.Is4() {
				addr = a
				break
			}
		}
	}
	dst := netip.AddrPortFrom(addr, t.Port)

	// TCP, through the tailnet only. Warming first keeps a freshly joined
	// node's first connection from stalling; a failure shows in the dial.
	wctx, cancel := context.WithTimeout(ctx, stepTimeout)
	node.WarmPath(wctx, addr)
	cancel()
	conn, st := dialStep(ctx, node, dst)
	if !st.OK {
		return fail(st)
	}
	r.Steps = append(r.Steps, st)

	// TLS, if the target speaks it.
	sni := t.Host
	if t.Addr.IsValid() {
		sni = ""
	}
	tconn, tst, isTLS := tlsStep(ctx, conn, sni, t.Host)
	if isTLS && !tst.OK {
		conn.Close()
		return fail(tst)
	}
	r.Steps = append(r.Steps, tst)
	if isTLS {
		conn = tconn
	} else {
		// The ClientHello went to a plain server; start a fresh connection.
		conn.Close()
		conn, st = dialStep(ctx, node, dst)
		if !st.OK {
			return fail(st)
		}
	}
	defer conn.Close()

	// HTTP.
	hst := httpStep(ctx, conn, t, isTLS)
	r.Steps = append(r.Steps, hst)
	r.OK = true
	r.Verdict = VerdictReachable
	if !hst.OK {
		r.Verdict, r.Hint = VerdictNoHTTP, hst.Hint
	}
	return r
}

func dialStep(ctx context.Context, node Dialer, dst netip.AddrPort) (net.Conn, Step) {
	start := time.Now()
	dctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	c, err := node.DialTCP(dctx, dst)
	st := Step{Name: "tcp", DurationMS: ms(time.Since(start)), Addresses: []string{dst.String()}}
	if err == nil {
		st.OK, st.Verdict = true, "connected through the tailnet"
		return c, st
	}
	st.Detail = err.Error()
	var nr *tailnet.NotRoutedError
	switch {
	case errors.As(err, &nr):
		st.Verdict = VerdictNotRouted
		if target.IsTailscaleIP(dst.Addr()) {
			st.Verdict = "device not reachable"
			st.Hint = fmt.Sprintf("%s is not a device this node can see: check that the device is online and that the tailgate grant in the policy includes it", dst.Addr())
		} else {
			st.Hint = fmt.Sprintf("no approved subnet route covers %s: approve the subnet router's route in the Tailscale admin console (Machines → router → Edit route settings), then verify again", dst.Addr())
		}
	case strings.Contains(err.Error(), "refused"):
		st.Verdict = VerdictRefused
		st.Hint = fmt.Sprintf("%s answered but nothing listens on port %d: check that the app is running and listening on that address", dst.Addr(), dst.Port())
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "deadline"):
		st.Verdict = VerdictTimeout
		st.Hint = fmt.Sprintf("no answer from %s: the grant for this port may be missing from the policy, the subnet router may be offline, or a firewall behind it drops the traffic", dst)
	default:
		st.Verdict = "connection failed"
		st.Hint = "the connection through the tailnet failed; see the detail"
	}
	return nil, st
}

// tlsStep tries a TLS handshake. isTLS is false when the server does not
// speak TLS (then the step is reported as skipped, not failed).
func tlsStep(ctx context.Context, c net.Conn, sni, host string) (net.Conn, Step, bool) {
	start := time.Now()
	// Verification is done by hand below so that a self-signed or
	// mismatched certificate is reported, not just refused.
	tc := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	hctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	err := tc.HandshakeContext(hctx)
	st := Step{Name: "tls", DurationMS: ms(time.Since(start))}
	if err != nil {
		if notTLS(err) {
			st.OK, st.Verdict = true, "not TLS (plain TCP)"
			return nil, st, false
		}
		st.Verdict, st.Detail = VerdictTLSFailed, err.Error()
		st.Hint = "the server speaks TLS but the handshake failed; check its TLS configuration"
		return nil, st, true
	}
	cs := tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	info := &TLSInfo{SNI: sni, Names: leaf.DNSNames, Issuer: leaf.Issuer.String(), NotAfter: leaf.NotAfter.UTC()}
	for _, ip := range leaf.IPAddresses {
		info.Names = append(info.Names, ip.String())
	}
	info.NameMatch = leaf.VerifyHostname(host) == nil
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Intermediates: inter}); err != nil {
		info.SelfSigned = true
	}
	st.TLS = info
	switch {
	case !info.NameMatch:
		st.Verdict = VerdictTLSMismatch
		st.Hint = fmt.Sprintf("the certificate is for %v, not %s: target a name on the certificate or reissue it with this name", info.Names, host)
		return nil, st, true
	case time.Now().After(leaf.NotAfter):
		st.Verdict = VerdictTLSExpired
		st.Hint = fmt.Sprintf("the certificate expired on %s; renew it", leaf.NotAfter.Format(time.DateOnly))
		return nil, st, true
	}
	st.OK, st.Verdict = true, "certificate valid for the name"
	if info.SelfSigned {
		st.Verdict = "certificate valid for the name (not trusted: self-signed or private CA)"
		st.Hint = "browsers in runs will need to accept this certificate"
	}
	return tc, st, true
}

// notTLS reports whether a failed handshake means the server does not
// speak TLS at all: it answered with something else, or hung up on the
// ClientHello.
func notTLS(err error) bool {
	var rh tls.RecordHeaderError
	return errors.As(err, &rh) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		strings.Contains(err.Error(), "connection reset")
}

func httpStep(ctx context.Context, c net.Conn, t target.Target, isTLS bool) Step {
	start := time.Now()
	st := Step{Name: "http"}
	deadline := time.Now().Add(stepTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	c.SetDeadline(deadline)
	scheme := "http"
	if isTLS {
		scheme = "https"
	}
	req, _ := http.NewRequest("GET", fmt.Sprintf("%s://%s/", scheme, t.String()), nil)
	req.Header.Set("User-Agent", "tailgate-verify")
	err := req.Write(c)
	var resp *http.Response
	if err == nil {
		resp, err = http.ReadResponse(bufio.NewReader(c), req)
	}
	st.DurationMS = ms(time.Since(start))
	if err != nil {
		st.Verdict, st.Detail = "no HTTP response", err.Error()
		st.Hint = "the port accepts connections but did not answer HTTP; fine for non-HTTP services"
		return st
	}
	resp.Body.Close()
	st.OK, st.HTTPStatus = true, resp.StatusCode
	st.Verdict = "HTTP " + resp.Status
	return st
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
