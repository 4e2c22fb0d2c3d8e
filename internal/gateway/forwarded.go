package gateway

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strings"
)

// stripConnectionHeaders removes the headers a client names in
// Connection (RFC 9110 §7.6.1) before any policy runs. The reverse proxy
// removes them again on the way out, after the gateway has added its own
// headers (requestHeaderModifier, extAuthz, forwarding): stripping them
// here first means a client can no longer delete a header the gateway
// sets by naming it (`Connection: X-Gw`). `Upgrade` stays, so WebSocket
// and other upgrades still reach the backend.
func stripConnectionHeaders(h http.Header) {
	upgrade := false
	for _, tok := range connectionTokens(h["Connection"]) {
		if strings.EqualFold(tok, "upgrade") {
			upgrade = true
		} else {
			h.Del(tok)
		}
	}
	if upgrade {
		h.Set("Connection", "Upgrade")
	} else {
		h.Del("Connection")
	}
}

// connectionTokens are the header names listed in Connection values vs
// (RFC 9110 §7.6.1), empty ones left out.
func connectionTokens(vs []string) []string {
	var toks []string
	for _, v := range vs {
		for _, tok := range strings.Split(v, ",") {
			if tok = textproto.TrimString(tok); tok != "" {
				toks = append(toks, tok)
			}
		}
	}
	return toks
}

// forwardingHeaders say who the client is and how it connected. The
// gateway owns them: they reach rules, extAuthz and backends only as
// setForwarding leaves them.
var forwardingHeaders = []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Real-Ip"}

// setForwarding applies the one trust policy for forwarding headers.
//
// From a peer that is not a trusted proxy (the default: the bind trusts
// none), every client-sent forwarding header is dropped and the gateway
// sets X-Forwarded-For and X-Real-IP to the peer's address,
// X-Forwarded-Proto to the connection's scheme and X-Forwarded-Host to the
// request's Host. From a trusted proxy (bind.trustedProxies), its
// X-Forwarded-For gets the peer appended, X-Real-IP becomes the rightmost
// X-Forwarded-For address that is not itself a trusted proxy,
// X-Forwarded-Proto / -Host are kept (set as above when absent) and
// Forwarded passes through unchanged. peerText is peer as text, when the
// caller has it already ("" to format it here).
func setForwarding(r *http.Request, peer netip.Addr, peerText string, trusted []netip.Prefix) {
	if peerText == "" && peer.IsValid() {
		peerText = peer.String()
	}
	h := r.Header
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if !peer.IsValid() || !isTrusted(peer, trusted) {
		for _, k := range forwardingHeaders {
			delete(h, k) // canonical already
		}
		// One backing array for the four values; each header gets its
		// own capped slice, so appending to one never touches another.
		v := make([]string, 4)
		v[0], v[1] = scheme, r.Host
		h["X-Forwarded-Proto"], h["X-Forwarded-Host"] = v[0:1:1], v[1:2:2]
		if peer.IsValid() {
			v[2] = peerText
			v[3] = v[2]
			h["X-Forwarded-For"], h["X-Real-Ip"] = v[2:3:3], v[3:4:4]
		}
		return
	}
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		for _, hop := range strings.Split(v, ",") {
			if hop = strings.TrimSpace(hop); hop != "" {
				hops = append(hops, hop)
			}
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			break // a hop we cannot read ends what we can vouch for
		}
		client = a
		if !isTrusted(a, trusted) {
			break
		}
	}
	h.Set("X-Forwarded-For", strings.Join(append(hops, peerText), ", "))
	h.Set("X-Real-Ip", client.String())
	if h.Get("X-Forwarded-Proto") == "" {
		h.Set("X-Forwarded-Proto", scheme)
	}
	if h.Get("X-Forwarded-Host") == "" {
		h.Set("X-Forwarded-Host", r.Host)
	}
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}

// parseHop reads one X-Forwarded-For entry: an address, possibly with a
// port ("192.0.2.1:5000", "[2001:db8::1]:443").
func parseHop(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
