package egress

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

const (
	socksVersion      byte = 0x05
	socksNoAuth       byte = 0x00
	socksNoAcceptable byte = 0xff
	socksCmdConnect   byte = 0x01
	socksAtypIPv4     byte = 0x01
	socksAtypDomain   byte = 0x03
	socksAtypIPv6     byte = 0x04
)

// serveSOCKS speaks SOCKS5 (RFC 1928) without authentication, CONNECT only.
// The version byte was already read by the sniffer. Domain names are
// resolved by the proxy through the tailnet, never by the client.
func (p *Proxy) serveSOCKS(c net.Conn) {
	defer lingerClose(c)
	ev := Event{Time: time.Now(), Protocol: ProtocolSOCKS5}
	_ = c.SetDeadline(time.Now().Add(p.waitTimeout))

	// Greeting: NMETHODS, METHODS.
	var n [1]byte
	if _, err := io.ReadFull(c, n[:]); err != nil {
		return
	}
	methods := make([]byte, n[0])
	if _, err := io.ReadFull(c, methods); err != nil {
		return
	}
	offered := false
	for _, m := range methods {
		offered = offered || m == socksNoAuth
	}
	if !offered {
		p.record(ev, refuse(ReasonUnsupported, "tailgate: SOCKS5 client offered no \"no authentication\" method"))
		_, _ = c.Write([]byte{socksVersion, socksNoAcceptable})
		return
	}
	if _, err := c.Write([]byte{socksVersion, socksNoAuth}); err != nil {
		return
	}

	// Request: VER CMD RSV ATYP DST.ADDR DST.PORT.
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	if hdr[0] != socksVersion {
		ref := refuse(ReasonBadRequest, fmt.Sprintf("tailgate: SOCKS5 request has version %#x", hdr[0]))
		ref.socks = socksGeneralFailure
		p.refuseSOCKS(c, ev, ref)
		return
	}
	host, ok := p.readSOCKSAddr(c, hdr[3], &ev)
	if !ok {
		return
	}
	var portb [2]byte
	if _, err := io.ReadFull(c, portb[:]); err != nil {
		return
	}
	ev.Host, ev.Port = host, binary.BigEndian.Uint16(portb[:])
	if name, _, err := normalizeHost(host); err == nil {
		ev.Host = name
	}
	if hdr[1] != socksCmdConnect {
		ref := refuse(ReasonUnsupported, fmt.Sprintf("tailgate: SOCKS5 command %#x is not supported; only CONNECT", hdr[1]))
		ref.socks = socksCommandNotSupported
		p.refuseSOCKS(c, ev, ref)
		return
	}
	if ev.Port == 0 {
		ref := refuse(ReasonBadRequest, "tailgate: SOCKS5 request for port 0")
		p.refuseSOCKS(c, ev, ref)
		return
	}

	_ = c.SetDeadline(time.Time{})
	upstream, resolved, ref := p.open(p.ctx, host, ev.Port)
	ev.Resolved = resolved
	if ref != nil {
		p.refuseSOCKS(c, ev, ref)
		return
	}
	defer upstream.Close()
	bound, _ := netip.ParseAddrPort(upstream.LocalAddr().String())
	if err := p.socksReply(c, socksSucceeded, bound); err != nil {
		ev.Error = fmt.Sprintf("answer SOCKS5 request: %v", err)
		p.record(ev, nil)
		return
	}
	up, down, err := p.tunnel(c, upstream, nil)
	ev.BytesUp, ev.BytesDown = up, down
	if err != nil && p.ctx.Err() == nil {
		ev.Error = err.Error()
	}
	p.record(ev, nil)
}

// readSOCKSAddr reads DST.ADDR of the given type; on an unsupported type it
// answers 0x08 and records the refusal.
func (p *Proxy) readSOCKSAddr(c net.Conn, atyp byte, ev *Event) (string, bool) {
	switch atyp {
	case socksAtypIPv4:
		var b [4]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return "", false
		}
		return netip.AddrFrom4(b).String(), true
	case socksAtypIPv6:
		var b [16]byte
		if _, err := io.ReadFull(c, b[:]); err != nil {
			return "", false
		}
		return netip.AddrFrom16(b).String(), true
	case socksAtypDomain:
		var n [1]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return "", false
		}
		b := make([]byte, n[0])
		if _, err := io.ReadFull(c, b); err != nil {
			return "", false
		}
		if len(b) == 0 {
			ref := refuse(ReasonBadRequest, "tailgate: SOCKS5 request with an empty domain name")
			p.refuseSOCKS(c, *ev, ref)
			return "", false
		}
		return string(b), true
	default:
		ref := refuse(ReasonUnsupported, fmt.Sprintf("tailgate: SOCKS5 address type %#x is not supported", atyp))
		ref.socks = socksAddrTypeUnsupported
		p.refuseSOCKS(c, *ev, ref)
		return "", false
	}
}

// socksReply writes VER REP RSV ATYP BND.ADDR BND.PORT.
func (p *Proxy) socksReply(c net.Conn, code byte, bound netip.AddrPort) error {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	defer c.SetWriteDeadline(time.Time{})
	a := bound.Addr().Unmap()
	b := []byte{socksVersion, code, 0x00}
	switch {
	case a.Is4():
		ip := a.As4()
		b = append(append(b, socksAtypIPv4), ip[:]...)
	case a.Is6():
		ip := a.As16()
		b = append(append(b, socksAtypIPv6), ip[:]...)
	default:
		b = append(b, socksAtypIPv4, 0, 0, 0, 0)
	}
	b = binary.BigEndian.AppendUint16(b, bound.Port())
	_, err := c.Write(b)
	return err
}

// lingerClose ends a SOCKS5 connection so the client reads our last reply:
// closing with unread request bytes would reset the connection and could
// discard the reply before the client sees it.
func lingerClose(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
	c.Close()
}

// refuseSOCKS records a refused SOCKS5 request and answers it with the
// refusal's reply code.
func (p *Proxy) refuseSOCKS(c net.Conn, ev Event, ref *Refusal) {
	p.record(ev, ref)
	p.socksReply(c, ref.SOCKSReply(), netip.AddrPort{})
}
