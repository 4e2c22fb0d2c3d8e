// Package egress is the per-run loopback proxy: the only way a run's browser
// or tools reach the network.
//
// # Overview
//
// A run joins the customer's tailnet as an ephemeral node (package tailnet).
// Chromium cannot use tsnet's own loopback SOCKS5 (it needs a password), and
// tsnet's Dial silently falls back to the host network for addresses the
// tailnet does not route. So each run gets a [Proxy] on 127.0.0.1, one port
// per run, that speaks three protocols on that one port:
//
//   - HTTP CONNECT (browsers use it for https:// and wss://),
//   - absolute-URI HTTP forwarding ("GET http://app.internal/ HTTP/1.1"),
//   - SOCKS5 without authentication, CONNECT only, names resolved by us.
//
// The first byte of a client connection decides: 0x05 is SOCKS5, anything
// else is HTTP.
//
// Every request passes the same three rules, in order:
//
//  1. the (host, port) must be exactly one of the environment's targets ([target.Target])
//     (hostnames case-insensitive, a trailing dot ignored; an IP-literal
//     target matches only that IP);
//  2. names are resolved with the [Resolver] only — the tailnet's MagicDNS and
//     split DNS — never the host resolver;
//  3. the resolved address is dialled with the [Dialer] only, which refuses
//     anything the tailnet does not route.
//
// The package has no other way out: it never calls net.Dial or the host
// resolver for outbound traffic, and its forwarding http.Transport dials
// through the same rule-checked path. A refusal tells the client why — HTTP
// 403 (or 502 when a name does not resolve in the tailnet) with a short
// text/plain body and an X-Tailgate-Refusal header carrying the [Reason]
// code, or the matching SOCKS5 reply code — and is recorded as an [Event].
//
// # Usage
//
//	p, err := egress.New(egress.Options{
//		Targets:  []target.Target{{Host: "app.internal.example", Port: 443}},
//		Resolver: node, // tailnet-only resolver
//		Dialer:   node, // fail-closed tailnet dialer
//		Logger:   logger,
//	})
//	if err != nil { ... }
//	addr, err := p.Start() // 127.0.0.1:<port>, serving in the background
//	if err != nil { ... }
//	defer p.Close()
//	// chromium --proxy-server=http://<addr>  or  curl --socks5-hostname <addr>
//	...
//	events := p.Events() // per-request diagnostics for the run report
//
// A Resolver or Dialer tells the proxy why it failed by wrapping
// [ErrNameNotInTailnet] or [ErrNotViaTailnet]; other errors are reported as
// resolve_failed / dial_failed.
package egress
