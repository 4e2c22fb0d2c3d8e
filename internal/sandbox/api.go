package sandbox

import (
	"fmt"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"tailscale.com/tailcfg"

	"github.com/tailgate-dev/tailgate/internal/tsapi/fake"
)

// apiServer is the Tailscale API v2 stand-in, served over the sandbox's
// live state.
type apiServer struct {
	fake *fake.Server
	http *httptest.Server
}

// newAPI creates the API stand-in before any node joins: the policy it
// stores decides what nodes see from the first map response on.
func (s *Sandbox) newAPI() {
	s.api = &apiServer{fake: fake.New(fake.Options{
		Tailnet:        sandboxTailnet{s},
		Logf:           s.logf,
		OnPolicyChange: s.nodesChanged,
	})}
}

// startAPI serves the API stand-in.
func (s *Sandbox) startAPI() error {
	srv, err := s.listenHTTP(s.api.fake)
	if err != nil {
		return fmt.Errorf("sandbox: API: %w", err)
	}
	srv.Start()
	s.api.http = srv
	return nil
}

func (a *apiServer) close() {
	if a.http != nil {
		a.http.Close()
	}
}

// APIURL is the base URL of the sandbox's Tailscale API (as for
// api.tailscale.com: the official client appends /api/v2/...).
func (s *Sandbox) APIURL() string { return s.api.http.URL }

// API is the fake API server, to mint tokens or inject failures.
func (s *Sandbox) API() *fake.Server { return s.api.fake }

// NewAPIToken mints an API access token with every permission, as an
// admin would in the Tailscale admin console.
func (s *Sandbox) NewAPIToken() string {
	return s.api.fake.NewAPIToken(fake.TokenOptions{Expiry: 24 * time.Hour})
}

// sandboxTailnet presents the sandbox's nodes as API devices.
type sandboxTailnet struct{ s *Sandbox }

func (t sandboxTailnet) Devices() []fake.Device {
	s := t.s
	nodes := s.control.AllNodes()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]fake.Device, 0, len(nodes))
	for _, n := range nodes {
		if s.removed[n.Key] {
			continue
		}
		d := fake.Device{
			NodeID:    string(n.StableID),
			Name:      strings.TrimSuffix(n.Name, "."),
			Ephemeral: !s.permanent[n.Key],
			Tags:      slices.Clone(n.Tags),
			Created:   n.Created,
			User:      "sandbox@example.com",
		}
		if d.Name == "" || !strings.Contains(d.Name, ".") {
			d.Name = n.Hostinfo.Hostname() + "." + MagicDNSSuffix
		}
		d.Hostname = n.Hostinfo.Hostname()
		if len(d.Tags) > 0 {
			d.User = "tagged-devices"
		}
		for _, p := range n.Addresses {
			d.Addresses = append(d.Addresses, p.Addr().String())
		}
		for _, p := range n.Hostinfo.RoutableIPs().All() {
			d.AdvertisedRoutes = append(d.AdvertisedRoutes, p.String())
		}
		for _, p := range s.enabled[n.Key] {
			d.EnabledRoutes = append(d.EnabledRoutes, p.String())
		}
		if s.relay.Connected(n.Key) {
			d.LastSeen = time.Now()
		}
		out = append(out, d)
	}
	return out
}

func (t sandboxTailnet) find(nodeID string) (*tailcfg.Node, error) {
	for _, n := range t.s.control.AllNodes() {
		if string(n.StableID) == nodeID || strconv.FormatInt(int64(n.ID), 10) == nodeID {
			t.s.mu.Lock()
			gone := t.s.removed[n.Key]
			t.s.mu.Unlock()
			if gone {
				break
			}
			return n, nil
		}
	}
	return nil, fake.ErrNotFound
}

func (t sandboxTailnet) SetEnabledRoutes(nodeID string, routes []string) error {
	n, err := t.find(nodeID)
	if err != nil {
		return err
	}
	var ps []netip.Prefix
	for _, r := range routes {
		p, err := netip.ParsePrefix(r)
		if err != nil {
			return fmt.Errorf("route %q: %w", r, err)
		}
		ps = append(ps, p.Masked())
	}
	return t.s.setEnabledRoutes(n.Key, ps)
}

// DeleteDevice removes a node: the sandbox closes it if it started it, and
// otherwise expires its key so its tsnet server drops out of the tailnet,
// as a real control server does.
func (t sandboxTailnet) DeleteDevice(nodeID string) error {
	n, err := t.find(nodeID)
	if err != nil {
		return err
	}
	s := t.s
	s.mu.Lock()
	s.removed[n.Key] = true
	own := s.nodes[n.Key]
	delete(s.nodes, n.Key)
	s.mu.Unlock()
	if own != nil {
		s.nodesChanged()
		go own.Close()
		return nil
	}
	s.expireKey(n.Key)
	return nil
}
