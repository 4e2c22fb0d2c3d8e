//go:build !linux

package jail

import (
	"errors"
	"net/netip"
	"os/exec"
)

// Jail is a no-op outside Linux: there are no network namespaces.
type Jail struct{ status Status }

func available() error { return errors.New("network namespaces exist only on Linux") }

func (j *Jail) startRelays([]netip.AddrPort) error { return nil }

// Wrap leaves cmd alone.
func (j *Jail) Wrap(*exec.Cmd) error { return nil }

// Close does nothing.
func (j *Jail) Close() error { return nil }

// KillWithParent does nothing where the kernel cannot.
func KillWithParent(*exec.Cmd) {}
