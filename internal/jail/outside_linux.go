package jail

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tailgate-dev/tailgate/internal/pipe"
)

// Environment variables the keeper reads; they never reach the command.
const (
	envKeeper     = "TAILGATE_JAIL_KEEPER"      // "run" or "probe"
	envForward    = "TAILGATE_JAIL_FORWARD"     // addr=socket,addr=socket
	envExtraFiles = "TAILGATE_JAIL_EXTRA_FILES" // how many inherited fds from 3 on to pass along
	envResolvConf = "TAILGATE_JAIL_RESOLV_CONF" // a file to mount over /etc/resolv.conf
)

// Jail is the outside half of one jail: a Unix socket per forwarded
// address, relaying the keeper's connections to the real address.
type Jail struct {
	status    Status
	dir       string
	forwards  []string // "addr=socket"
	listeners []net.Listener
	wg        sync.WaitGroup
	pairs     pipe.Group
}

// cloneFlags are the namespaces a jail gets: its own network, and its own
// mounts so the host's name-service sockets can be hidden. A process that
// is not root also gets its own user namespace, in which it may do both.
func cloneFlags() (uintptr, bool) {
	flags := uintptr(syscall.CLONE_NEWNET | syscall.CLONE_NEWNS)
	if os.Geteuid() == 0 {
		return flags, false
	}
	return flags | syscall.CLONE_NEWUSER, true
}

func setNamespaces(attr *syscall.SysProcAttr) {
	flags, user := cloneFlags()
	attr.Cloneflags |= flags
	if user {
		// The keeper is root in its namespace (and nobody special outside):
		// root there may bring up loopback and mount over the resolver files.
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Geteuid(), Size: 1}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getegid(), Size: 1}}
		attr.GidMappingsEnableSetgroups = false
	}
}

var (
	probeOnce sync.Once
	probeErr  error
)

// available starts the keeper once per process in probe mode: it enters
// the namespaces, brings loopback up and exits. Whatever stops it (no user
// namespaces for this user, a seccomp filter, a missing executable) is the
// reason a jail is impossible here.
func available() error {
	probeOnce.Do(func() {
		self, err := os.Executable()
		if err != nil {
			probeErr = fmt.Errorf("find this executable: %w", err)
			return
		}
		cmd := exec.Command(self)
		cmd.Args = []string{"tailgate-jail-probe"}
		cmd.Env = append(os.Environ(), envKeeper+"=probe")
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		setNamespaces(cmd.SysProcAttr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			msg := strings.TrimSpace(string(out))
			if msg == "" {
				msg = err.Error()
			}
			probeErr = errors.New(msg)
		}
	})
	return probeErr
}

func (j *Jail) startRelays(forward []netip.AddrPort) error {
	dir, err := os.MkdirTemp("", "tailgate-jail-")
	if err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	j.dir = dir
	// An empty resolver file: inside the jail there is no name server to
	// ask, and the file says so to whoever reads it.
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("# tailgate jail: no resolver; names resolve only through the run's proxy\n"), 0o644); err != nil {
		return fmt.Errorf("jail: %w", err)
	}
	for i, ap := range forward {
		path := filepath.Join(dir, strconv.Itoa(i)+".sock")
		ln, err := net.Listen("unix", path)
		if err != nil {
			return fmt.Errorf("jail: relay for %s: %w", ap, err)
		}
		j.listeners = append(j.listeners, ln)
		j.forwards = append(j.forwards, ap.String()+"="+path)
		j.wg.Add(1)
		go j.relay(ln, ap.String())
	}
	return nil
}

// relay accepts the keeper's connections and joins each to target.
func (j *Jail) relay(ln net.Listener, target string) {
	defer j.wg.Done()
	pipe.Forward(ln, func() (net.Conn, error) { return net.DialTimeout("tcp", target, 10*time.Second) }, &j.pairs, &j.wg)
}

// Wrap rewrites cmd to start inside the jail; with the jail off it leaves
// cmd alone. Call it after cmd's Path, Args, Env and ExtraFiles are set
// and before Start. The command's environment, files and stdio pass
// through the keeper unchanged.
func (j *Jail) Wrap(cmd *exec.Cmd) error {
	if !j.status.On {
		return nil
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("jail: find this executable: %w", err)
	}
	env := cmd.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(append([]string(nil), env...),
		envKeeper+"=run",
		envForward+"="+strings.Join(j.forwards, ","),
		envExtraFiles+"="+strconv.Itoa(len(cmd.ExtraFiles)),
		envResolvConf+"="+filepath.Join(j.dir, "resolv.conf"),
	)
	cmd.Args = append([]string{"tailgate-jail", cmd.Path}, cmd.Args...)
	cmd.Path = self
	cmd.Env = env
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	setNamespaces(cmd.SysProcAttr)
	return nil
}

// Close stops the relays and removes the jail's sockets. Connections still
// open are cut: the command has exited.
func (j *Jail) Close() error {
	j.pairs.Close()
	for _, ln := range j.listeners {
		ln.Close()
	}
	j.wg.Wait()
	if j.dir != "" {
		return os.RemoveAll(j.dir)
	}
	return nil
}

// KillWithParent makes cmd die when the process that started it dies, so
// a crashed tailgate leaves no jailed browser behind.
func KillWithParent(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
