package config

import "fmt"

// checkInternalBinds checks mode: internal binds and what only they may
// hold. An internal bind is never opened: a tunnelProtocol: connect bind
// hands it the tunnels to its port, so one needs the other. A dynamic
// backend sends a request wherever its Host says; on an opened port that
// would make the gateway an open proxy for anyone who can reach it, so
// it is accepted only behind a tunnel bind (whose clients the operator
// chose to let out), as agentgateway's example uses it.
func (d *decoder) checkInternalBinds(f *File) {
	connect := false
	for _, b := range f.Binds {
		connect = connect || b.TunnelProtocol == "connect"
	}
	for bi := range f.Binds {
		b := &f.Binds[bi]
		bp := b.PathAt(bi)
		internal := false
		switch b.Mode {
		case "", "standard":
		case "internal":
			internal = true
			switch {
			case b.TunnelProtocol != "" && b.TunnelProtocol != "direct":
				d.failAt(b.Pos, bp+".mode", "an internal bind cannot itself be a tunnel bind (tunnelProtocol: %s)", b.TunnelProtocol)
			case b.Tailnet:
				d.failAt(b.Pos, bp+".mode", "an internal bind is opened on no network, so tailnet: true has no meaning")
			case !connect:
				d.failAt(b.Pos, bp+".mode", "an internal bind is reached only through a tunnelProtocol: connect bind, and none is configured")
			}
		default:
			d.failAt(b.Pos, bp+".mode", "expected standard or internal, got %q", b.Mode)
		}
		for li := range b.Listeners {
			l := &b.Listeners[li]
			lp := l.PathAt(bp, li)
			if t := l.TLS; t != nil {
				switch t.Mode {
				case "", "static", "dynamicCa":
				default:
					d.failAt(t.Pos, lp+".tls.mode", "expected static or dynamicCa, got %q", t.Mode)
				}
			}
			for ri := range l.Routes {
				r := &l.Routes[ri]
				rp := r.PathAt(lp, ri)
				for bi := range r.Backends {
					be := &r.Backends[bi]
					if be.Dynamic == nil || internal {
						continue
					}
					p := fmt.Sprintf("%s.backends[%d].dynamic", rp, bi)
					if be.YAMLPath != "" {
						p = be.YAMLPath + ".dynamic"
					}
					d.failAt(be.Pos, p, "a dynamic backend sends each request to the host it names; tailgate allows it only on a mode: internal bind (reached through a CONNECT tunnel), never on an opened port")
				}
			}
		}
	}
}
