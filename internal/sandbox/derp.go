package sandbox

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"

	"tailscale.com/derp/derpserver"
	"tailscale.com/net/stun"
	"tailscale.com/tailcfg"
	"tailscale.com/types/key"
	"tailscale.com/types/logger"
)

// Relay is a DERP server and a STUN responder on one address (127.0.0.1
// unless told otherwise), the same pair
// tailscale.com's integration tests start, without importing the testing
// package into the tailgate binary. The sandbox runs one; tests that run
// another control server (headscale) use one too.
type Relay struct {
	derp    *derpserver.Server
	https   *httptest.Server
	stun    *net.UDPConn
	stunErr chan struct{}
	derpMap *tailcfg.DERPMap
}

// StartRelay starts a DERP server and a STUN responder on 127.0.0.1.
func StartRelay(logf logger.Logf) (*Relay, error) {
	return StartRelayOn(netip.AddrFrom4([4]byte{127, 0, 0, 1}), logf)
}

// StartRelayOn starts a DERP server and a STUN responder on addr, an IPv4
// address of this host, each on a free port. Its DERP map names addr, so
// nodes on other hosts (or network namespaces) that can reach addr can
// use it.
func StartRelayOn(addr netip.Addr, logf logger.Logf) (*Relay, error) {
	if !addr.Is4() || addr.IsUnspecified() {
		return nil, fmt.Errorf("relay address %v: want an IPv4 address of this host (not 0.0.0.0), which the DERP map can name", addr)
	}
	r := &Relay{derp: derpserver.New(key.NewNode(), logf), stunErr: make(chan struct{})}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		return nil, err
	}
	r.https = httptest.NewUnstartedServer(derpserver.Handler(r.derp))
	r.https.Listener.Close()
	r.https.Listener = ln
	r.https.Config.ErrorLog = logger.StdLogger(logf)
	// DERP upgrades the HTTP/1.1 connection; HTTP/2 would break that.
	r.https.Config.TLSNextProto = make(map[string]func(*http.Server, *tls.Conn, http.Handler))
	r.https.StartTLS()

	pc, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, 0)))
	if err != nil {
		r.Close()
		return nil, err
	}
	r.stun = pc
	go r.serveSTUN()

	r.derpMap = &tailcfg.DERPMap{
		Regions: map[int]*tailcfg.DERPRegion{
			1: {
				RegionID:   1,
				RegionCode: "sandbox",
				RegionName: "tailgate sandbox",
				Nodes: []*tailcfg.DERPNode{{
					Name:             "sandbox1",
					RegionID:         1,
					HostName:         addr.String(),
					IPv4:             addr.String(),
					IPv6:             "none",
					STUNPort:         pc.LocalAddr().(*net.UDPAddr).Port,
					DERPPort:         ln.Addr().(*net.TCPAddr).Port,
					InsecureForTests: true,
					STUNTestIP:       addr.String(),
				}},
			},
		},
	}
	return r, nil
}

// serveSTUN answers binding requests with the sender's address, which is
// all a node needs to learn its endpoint on loopback or a LAN.
func (r *Relay) serveSTUN() {
	defer close(r.stunErr)
	buf := make([]byte, 64<<10)
	for {
		n, src, err := r.stun.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		pkt := buf[:n]
		if !stun.Is(pkt) {
			continue
		}
		txid, err := stun.ParseBindingRequest(pkt)
		if err != nil {
			continue
		}
		src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
		r.stun.WriteToUDPAddrPort(stun.Response(txid, src), src)
	}
}

// DERPMap is the one-region map that points nodes at this relay.
func (r *Relay) DERPMap() *tailcfg.DERPMap { return r.derpMap }

// Connected reports whether the node with key k holds a DERP connection.
func (r *Relay) Connected(k key.NodePublic) bool { return r.derp.IsClientConnectedForTest(k) }

// Close stops the relay.
func (r *Relay) Close() {
	if r.stun != nil {
		r.stun.Close()
		<-r.stunErr
	}
	if r.https != nil {
		r.https.Close()
	}
	r.derp.Close()
}
