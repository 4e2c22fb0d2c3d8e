package jail

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/tailgate-dev/tailgate/internal/pipe"

	"golang.org/x/sys/unix"
)

// init turns this process into a jail's keeper when it was started as one
// (see [Jail.Wrap]). It runs before main or TestMain, in every binary that
// links this package, so the tailgate binary and the test binaries alike
// can start jails.
func init() {
	switch os.Getenv(envKeeper) {
	case "probe":
		if err := bringUpLoopback(); err != nil {
			fmt.Fprintf(os.Stderr, "bring up loopback in a new network namespace: %v", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "run":
		os.Exit(keep())
	}
}

// keep sets up the inside of the jail, runs the command and returns its
// exit status. Any failure before the command starts is 125, as env(1)
// and container runtimes use for "the wrapper failed".
func keep() int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(os.Stderr, "tailgate jail: "+format+"\n", args...)
		return 125
	}
	if len(os.Args) < 3 {
		return fail("no command given")
	}
	if err := bringUpLoopback(); err != nil {
		return fail("bring up loopback: %v", err)
	}
	if err := hideNameService(os.Getenv(envResolvConf)); err != nil {
		return fail("hide the host's resolver: %v", err)
	}
	for _, fw := range strings.Split(os.Getenv(envForward), ",") {
		if fw == "" {
			continue
		}
		addr, sock, ok := strings.Cut(fw, "=")
		if !ok {
			return fail("bad forward %q", fw)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fail("serve the run's proxy at %s: %v", addr, err)
		}
		go serveForward(ln, sock)
	}
	nExtra, _ := strconv.Atoi(os.Getenv(envExtraFiles))

	cmd := exec.Command(os.Args[1])
	cmd.Args = os.Args[2:]
	cmd.Env = commandEnv(os.Environ())
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	for i := range nExtra {
		cmd.ExtraFiles = append(cmd.ExtraFiles, os.NewFile(uintptr(3+i), "inherited"))
	}
	// The command dies with its keeper; the keeper dies with its parent
	// (the caller sets that on the keeper).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "tailgate jail: %v\n", err)
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, os.ErrNotExist) {
			return 127
		}
		return 126
	}
	for _, f := range cmd.ExtraFiles {
		f.Close()
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	for {
		select {
		case s := <-sigs:
			cmd.Process.Signal(s)
		case err := <-waited:
			var ee *exec.ExitError
			switch {
			case err == nil:
				return 0
			case errors.As(err, &ee):
				if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ee.ExitCode()
			default:
				return fail("wait for the command: %v", err)
			}
		}
	}
}

// commandEnv is the keeper's environment without the keeper's own
// variables.
func commandEnv(env []string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if strings.HasPrefix(kv, "TAILGATE_JAIL_") {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// serveForward relays every connection to the jail's loopback address
// over the Unix socket to the outside half.
func serveForward(ln net.Listener, sock string) {
	pipe.Forward(ln, func() (net.Conn, error) { return net.Dial("unix", sock) }, nil, nil)
}

// bringUpLoopback sets IFF_UP on lo: a new network namespace starts with
// loopback down, and the jail's proxy listens there.
func bringUpLoopback() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}

// nameServiceSockets are Unix sockets through which a resolver on the host
// would answer for a jailed process: path sockets cross network
// namespaces, so they are covered with an empty directory.
var nameServiceSockets = []string{
	"/run/nscd", "/var/run/nscd", "/run/systemd/resolve", "/var/lib/sss/pipes",
}

// hideNameService makes this mount namespace's view private, puts an
// empty resolver file over /etc/resolv.conf and covers the host's
// name-service sockets. Without a route no name server is reachable
// anyway; this also stops a caching daemon from answering over a Unix
// socket.
func hideNameService(resolvConf string) error {
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if resolvConf != "" {
		if st, err := os.Stat("/etc/resolv.conf"); err == nil && st.Mode().IsRegular() {
			if err := unix.Mount(resolvConf, "/etc/resolv.conf", "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("cover /etc/resolv.conf: %w", err)
			}
		}
	}
	for _, dir := range nameServiceSockets {
		st, err := os.Stat(dir)
		if err != nil || !st.IsDir() {
			continue
		}
		if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0755"); err != nil {
			return fmt.Errorf("cover %s: %w", dir, err)
		}
	}
	return nil
}
