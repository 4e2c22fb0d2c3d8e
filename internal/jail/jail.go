// Package jail starts a command (a test tool, a browser) in a network
// namespace of its own whose only way out is the run's proxy.
//
// Inside the jail there is a loopback interface and nothing else: no
// route, no resolver. The run's proxy is served into the namespace at the
// same loopback address and port it has outside, so the command's proxy
// URL does not change. A tool that ignores the proxy, or resolves names
// itself (curl --socks5, getaddrinfo), fails inside the jail instead of
// reaching the host's network or DNS.
//
// How: the command is started through the current executable again (a
// re-exec, as container runtimes do), cloned into new network and mount
// namespaces, and into a new user namespace when not root, so no
// privilege is needed where the kernel allows unprivileged user
// namespaces. That first process, the jail's keeper, brings loopback up,
// hides the host's name-service sockets, listens on the forwarded ports
// and relays each connection over a Unix socket to the outside half
// ([Jail]), which dials the real proxy. Then it starts the command as its
// child and passes signals and the exit status through.
package jail

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
)

// Mode says how strict a run is about its jail.
type Mode string

const (
	// ModeAuto jails the command where the kernel allows it and warns once
	// per process where it does not.
	ModeAuto Mode = "auto"
	// ModeRequired refuses to start the command without a jail.
	ModeRequired Mode = "required"
	// ModeOff starts the command in the host's network namespace.
	ModeOff Mode = "off"
)

// ParseMode reads a --jail flag value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case ModeAuto, ModeRequired, ModeOff:
		return m, nil
	case "":
		return ModeAuto, nil
	}
	return "", fmt.Errorf("jail mode %q: want auto, required or off", s)
}

// ErrUnavailable is wrapped by New's error when ModeRequired meets a
// system without usable namespaces.
var ErrUnavailable = errors.New("the network jail is not available here")

// Options configure one jail.
type Options struct {
	Mode Mode
	// Forward are the loopback TCP addresses (the run's proxy) served at
	// the same address inside the jail. Nothing else is reachable there.
	Forward []netip.AddrPort
	// Logger receives the one warning ModeAuto gives where no jail is
	// possible. Nil discards it.
	Logger *slog.Logger
}

// Status is what a run report says of its jail.
type Status struct {
	// On is true when the command runs in its own network namespace.
	On bool `json:"on"`
	// Mode is the mode asked for.
	Mode Mode `json:"mode"`
	// Reason says why the jail is off, when it is.
	Reason string `json:"reason,omitempty"`
}

// String is the one-line form for logs and stderr.
func (s Status) String() string {
	if s.On {
		return "on (own network namespace: only the run's proxy is reachable, no route, no resolver)"
	}
	return "off (" + s.Reason + ")"
}

var warnOnce sync.Once

// checkAvailable says why a jail is impossible here, or nil. A variable,
// so the package's tests can play a system without namespaces.
var checkAvailable = available

// New prepares a jail: in ModeAuto and ModeRequired it checks that
// namespaces work here and starts the outside half of each forward. The
// caller wraps its command with [Jail.Wrap] and calls Close once the
// command has exited.
func New(opts Options) (*Jail, error) {
	mode := opts.Mode
	if mode == "" {
		mode = ModeAuto
	}
	j := &Jail{status: Status{Mode: mode}}
	if mode == ModeOff {
		j.status.Reason = "--jail=off"
		return j, nil
	}
	for _, ap := range opts.Forward {
		if !ap.Addr().IsLoopback() {
			return nil, fmt.Errorf("jail: %s is not a loopback address; only a local proxy can be served into the jail", ap)
		}
	}
	if err := checkAvailable(); err != nil {
		if mode == ModeRequired {
			return nil, fmt.Errorf("%w: %v (use --jail=auto to run without it)", ErrUnavailable, err)
		}
		j.status.Reason = "namespaces unavailable: " + err.Error()
		warnOnce.Do(func() {
			if opts.Logger != nil {
				opts.Logger.Warn("the network jail is off: commands run in the host's network namespace, reaching out only through the run's proxy if they honour it",
					"reason", err.Error())
			}
		})
		return j, nil
	}
	if err := j.startRelays(opts.Forward); err != nil {
		j.Close()
		return nil, err
	}
	j.status.On = true
	return j, nil
}

// Status says whether the jail is on.
func (j *Jail) Status() Status { return j.status }
