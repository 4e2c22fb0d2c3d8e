package fake

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// ErrNotFound is what a Tailnet returns for a node it does not know.
// The fake API answers it with 404.
var ErrNotFound = errors.New("not found")

// Device is one node of the tailnet as the API reports it.
type Device struct {
	NodeID   string // stable node id, e.g. "nXXXXXCNTRL"; also used as the legacy "id"
	Name     string // MagicDNS FQDN, e.g. "staging-box.tail0000.ts.net"
	Hostname string
	User     string // login name of the owner; "tagged-devices" for tagged nodes

	Addresses []string // Tailscale addresses, e.g. "100.64.0.1", "fd7a:115c:a1e0::1"
	Tags      []string
	Ephemeral bool

	AdvertisedRoutes []string // subnet routes the node offers
	EnabledRoutes    []string // subnet routes an admin approved

	Created, LastSeen time.Time
}

// Tailnet is the live network the fake API reports on and acts upon.
//
// The sandbox implements it over its in-process tailnet so that what the
// API says and what nodes experience agree; MemTailnet implements it in
// memory for unit tests. The fake calls it without holding its own lock,
// so an implementation may take its time (DeleteDevice logs a node out).
type Tailnet interface {
	// Devices lists every node, in a stable order.
	Devices() []Device
	// SetEnabledRoutes replaces the node's approved subnet routes.
	// It returns ErrNotFound for an unknown node.
	SetEnabledRoutes(nodeID string, routes []string) error
	// DeleteDevice removes the node from the tailnet, logging it out.
	// It returns ErrNotFound for an unknown node.
	DeleteDevice(nodeID string) error
}

// MemTailnet is an in-memory Tailnet for tests. The zero value is empty and
// ready to use; it is safe for concurrent use.
type MemTailnet struct {
	mu      sync.Mutex
	devices []Device
}

// Add puts a device on the tailnet, replacing one with the same NodeID.
func (m *MemTailnet) Add(d Device) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d = cloneDevice(d)
	for i := range m.devices {
		if m.devices[i].NodeID == d.NodeID {
			m.devices[i] = d
			return
		}
	}
	m.devices = append(m.devices, d)
}

// Devices implements Tailnet.
func (m *MemTailnet) Devices() []Device {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Device, len(m.devices))
	for i, d := range m.devices {
		out[i] = cloneDevice(d)
	}
	return out
}

// SetEnabledRoutes implements Tailnet.
func (m *MemTailnet) SetEnabledRoutes(nodeID string, routes []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.devices {
		if m.devices[i].NodeID == nodeID {
			m.devices[i].EnabledRoutes = slices.Clone(routes)
			return nil
		}
	}
	return fmt.Errorf("node %q: %w", nodeID, ErrNotFound)
}

// DeleteDevice implements Tailnet.
func (m *MemTailnet) DeleteDevice(nodeID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range m.devices {
		if m.devices[i].NodeID == nodeID {
			m.devices = slices.Delete(m.devices, i, i+1)
			return nil
		}
	}
	return fmt.Errorf("node %q: %w", nodeID, ErrNotFound)
}

func cloneDevice(d Device) Device {
	d.Addresses = slices.Clone(d.Addresses)
	d.Tags = slices.Clone(d.Tags)
	d.AdvertisedRoutes = slices.Clone(d.AdvertisedRoutes)
	d.EnabledRoutes = slices.Clone(d.EnabledRoutes)
	return d
}
