package netnstest

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Packet is one captured frame, decoded as far as a leak check needs.
type Packet struct {
	Time time.Time
	// Kind is "arp", "ipv4", "ipv6" or "other".
	Kind string
	// Proto is "tcp", "udp", "icmp", "icmpv6", "igmp" or a number.
	Proto    string
	Src, Dst netip.Addr
	// SrcPort and DstPort are set for TCP and UDP.
	SrcPort, DstPort uint16
	// ICMPType is set for ICMP and ICMPv6.
	ICMPType uint8
	Len      int
}

func (p Packet) String() string {
	switch {
	case p.Kind == "arp":
		return "arp"
	case p.Proto == "tcp" || p.Proto == "udp":
		return fmt.Sprintf("%s %s:%d → %s:%d (%d bytes)", p.Proto, p.Src, p.SrcPort, p.Dst, p.DstPort, p.Len)
	case p.Proto == "icmp" || p.Proto == "icmpv6":
		return fmt.Sprintf("%s type %d %s → %s", p.Proto, p.ICMPType, p.Src, p.Dst)
	}
	return fmt.Sprintf("%s %s %s → %s (%d bytes)", p.Kind, p.Proto, p.Src, p.Dst, p.Len)
}

// Capture records every frame an interface of a namespace receives.
type Capture struct {
	fd      int
	mu      sync.Mutex
	packets []Packet
	done    chan struct{}
	stop    chan struct{}
}

// StartCapture opens a packet socket on ifc inside ns and records every
// frame it receives until Stop (or the end of the test).
func StartCapture(t testing.TB, ns *NS, ifc string) *Capture {
	t.Helper()
	fd, err := packetSocketIn(ns.Name, ifc)
	if err != nil {
		t.Fatalf("capture on %s in %s: %v", ifc, ns.Name, err)
	}
	c := &Capture{fd: fd, done: make(chan struct{}), stop: make(chan struct{})}
	go c.loop()
	t.Cleanup(func() { c.Stop() })
	return c
}

// packetSocketIn creates an AF_PACKET socket inside the named namespace:
// a socket stays in the namespace it was made in, so this thread enters
// the namespace only for the socket call and comes back.
func packetSocketIn(ns, ifc string) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return -1, err
	}
	defer self.Close()
	target, err := os.Open("/var/run/netns/" + ns)
	if err != nil {
		return -1, err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return -1, fmt.Errorf("enter %s: %w", ns, err)
	}
	defer func() {
		if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
			// This thread is in the wrong namespace; never reuse it.
			panic(fmt.Sprintf("netnstest: return from %s: %v", ns, err))
		}
	}()
	iface, err := net.InterfaceByName(ifc)
	if err != nil {
		return -1, err
	}
	proto := int(htons(unix.ETH_P_ALL))
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return -1, err
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func (c *Capture) loop() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		select {
		case <-c.stop:
			return
		default:
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout: look at stop again
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // what this end sent back, not what arrived
		}
		p := decode(buf[:n])
		p.Time = time.Now()
		c.mu.Lock()
		c.packets = append(c.packets, p)
		c.mu.Unlock()
	}
}

// Stop ends the capture; Packets still answers afterwards.
func (c *Capture) Stop() {
	select {
	case <-c.stop:
		return
	default:
	}
	close(c.stop)
	<-c.done
	unix.Close(c.fd)
}

// Packets returns what was captured so far.
func (c *Capture) Packets() []Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Packet(nil), c.packets...)
}

// decode reads an Ethernet frame's network and transport headers.
func decode(b []byte) Packet {
	p := Packet{Kind: "other", Len: len(b)}
	if len(b) < 14 {
		return p
	}
	etype, l3 := binary.BigEndian.Uint16(b[12:14]), b[14:]
	var proto byte
	var l4 []byte
	switch etype {
	case 0x0806:
		p.Kind = "arp"
		return p
	case 0x0800:
		if len(l3) < 20 {
			return p
		}
		p.Kind = "ipv4"
		ihl := int(l3[0]&0x0f) * 4
		proto = l3[9]
		p.Src, _ = netip.AddrFromSlice(l3[12:16])
		p.Dst, _ = netip.AddrFromSlice(l3[16:20])
		if ihl <= len(l3) {
			l4 = l3[ihl:]
		}
	case 0x86dd:
		if len(l3) < 40 {
			return p
		}
		p.Kind = "ipv6"
		proto = l3[6]
		p.Src, _ = netip.AddrFromSlice(l3[8:24])
		p.Dst, _ = netip.AddrFromSlice(l3[24:40])
		l4 = l3[40:]
		// Hop-by-hop options (MLD reports carry them): skip one header.
		if proto == 0 && len(l4) >= 8 {
			proto, l4 = l4[0], l4[(int(l4[1])+1)*8:]
		}
	default:
		return p
	}
	switch proto {
	case 6, 17:
		p.Proto = map[byte]string{6: "tcp", 17: "udp"}[proto]
		if len(l4) >= 4 {
			p.SrcPort, p.DstPort = binary.BigEndian.Uint16(l4[0:2]), binary.BigEndian.Uint16(l4[2:4])
		}
	case 1, 58:
		p.Proto = map[byte]string{1: "icmp", 58: "icmpv6"}[proto]
		if len(l4) >= 1 {
			p.ICMPType = l4[0]
		}
	case 2:
		p.Proto = "igmp"
	default:
		p.Proto = fmt.Sprint(proto)
	}
	return p
}

// LinkChatter reports whether p is the link's own housekeeping, sent by
// the kernel whatever the applications do: ARP, IPv6 neighbour and router
// discovery, multicast listener reports, IGMP.
func (p Packet) LinkChatter() bool {
	switch {
	case p.Kind == "arp", p.Proto == "igmp":
		return true
	case p.Proto == "icmpv6":
		switch p.ICMPType {
		case 130, 131, 132, 133, 134, 135, 136, 143:
			return true
		}
	}
	return false
}
