package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tsclient "tailscale.com/client/tailscale/v2"

	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/sandbox/sandboxtest"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

var (
	shared     *sandbox.Sandbox
	sharedErr  error
	sharedOnce sync.Once
)

// sharedSandbox starts one sandbox for the package's tests: starting one
// costs a router and a device join.
func sharedSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		shared, sharedErr = sandbox.Start(ctx, sandbox.Options{})
	})
	if sharedErr != nil {
		t.Fatalf("sandbox.Start: %v", sharedErr)
	}
	return shared
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	if code != 0 {
		panic(fmt.Sprintf("exit %d", code))
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newNode(t *testing.T, sb *sandbox.Sandbox, o sandbox.NodeOptions) *tailnet.Node {
	t.Helper()
	n, err := sb.NewNode(ctxT(t), o)
	if err != nil {
		t.Fatalf("NewNode(%s): %v", o.Hostname, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// get fetches url through n only: names resolve in the tailnet and dials
// go through it.
func get(ctx context.Context, n *tailnet.Node, rawURL string) (int, string, error) {
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, portStr, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips, err := n.LookupNetIP(ctx, host)
			if err != nil {
				return nil, err
			}
			port, _ := strconv.Atoi(portStr)
			return n.DialTCP(ctx, netip.AddrPortFrom(ips[0], uint16(port)))
		},
	}}
	defer c.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, "GET", rawURL, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestTwoNodesExchangeHTTP(t *testing.T) {
	sb := sharedSandbox(t)
	server := newNode(t, sb, sandbox.NodeOptions{Hostname: "http-server"})
	client := newNode(t, sb, sandbox.NodeOptions{Hostname: "http-client"})

	ln, err := server.Server().Listen("tcp", ":8080")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.RemoteAddr)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	code, body, err := get(ctxT(t), client, "http://"+server.IPv4().String()+":8080/")
	if err != nil || code != 200 {
		t.Fatalf("GET from client to server: %d %v", code, err)
	}
	// The server sees the client's tailnet address: the request really
	// crossed the tailnet.
	if !strings.Contains(body, client.IPv4().String()) {
		t.Errorf("server saw %q, want the client's tailnet address %v", body, client.IPv4())
	}
}

func TestNodeReachesSubnetAppByIPAndInternalName(t *testing.T) {
	sb := sharedSandbox(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "subnet-client", AcceptRoutes: true})
	ctx := ctxT(t)

	// The host's resolver does not know the internal zone; only the
	// tailnet's split DNS does.
	if addrs, err := net.DefaultResolver.LookupHost(ctx, sandbox.DemoAppName); err == nil {
		t.Fatalf("host resolver unexpectedly resolves %s to %v; the test cannot tell the paths apart", sandbox.DemoAppName, addrs)
	}
	ips, err := n.LookupNetIP(ctx, sandbox.DemoAppName)
	if err != nil {
		t.Fatalf("LookupNetIP(%s): %v", sandbox.DemoAppName, err)
	}
	if !slices.Contains(ips, sandbox.DemoAppIP) {
		t.Fatalf("LookupNetIP(%s) = %v, want %v", sandbox.DemoAppName, ips, sandbox.DemoAppIP)
	}
	for _, u := range []string{
		"http://" + sandbox.DemoAppIP.String() + "/",
		"http://" + sandbox.DemoAppName + "/",
	} {
		code, body, err := get(ctx, n, u)
		if err != nil || code != 200 || !strings.Contains(body, sandbox.DemoAppText) {
			t.Errorf("GET %s: %d %v %.80q", u, code, err, body)
		}
	}
}

func TestDeviceReachableByMagicDNSName(t *testing.T) {
	sb := sharedSandbox(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "magicdns-client"})
	ctx := ctxT(t)
	name := sandbox.DeviceName + "." + sandbox.MagicDNSSuffix
	ips, err := n.LookupNetIP(ctx, name)
	if err != nil || !slices.Contains(ips, sb.Device().IPv4()) {
		t.Fatalf("LookupNetIP(%s) = %v, %v; want %v", name, ips, err, sb.Device().IPv4())
	}
	code, body, err := get(ctx, n, "http://"+name+"/")
	if err != nil || code != 200 || !strings.Contains(body, sandbox.DemoAppText) {
		t.Fatalf("GET device app: %d %v", code, err)
	}
}

func TestFailClosed(t *testing.T) {
	sb := sharedSandbox(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "failclosed-client", AcceptRoutes: true})
	ctx := ctxT(t)

	t.Run("unapproved route is not dialled", func(t *testing.T) {
		_, err := n.DialTCP(ctx, netip.AddrPortFrom(sandbox.LegacyAppIP, 80))
		var nr *tailnet.NotRoutedError
		if !errors.As(err, &nr) {
			t.Fatalf("dial %v: err = %v, want NotRoutedError", sandbox.LegacyAppIP, err)
		}
	})
	t.Run("loopback is not dialled", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		_, err = n.DialTCP(ctx, ln.Addr().(*net.TCPAddr).AddrPort())
		var nr *tailnet.NotRoutedError
		if !errors.As(err, &nr) {
			t.Fatalf("dial host loopback through the node: err = %v, want NotRoutedError", err)
		}
	})
	for _, name := range []string{"nope." + sandbox.InternalZone, "example.com", "localhost"} {
		t.Run("name "+name+" is not in the tailnet", func(t *testing.T) {
			_, err := n.LookupNetIP(ctx, name)
			if !errors.Is(err, tailnet.ErrNameNotInTailnet) {
				t.Fatalf("LookupNetIP(%s) err = %v, want ErrNameNotInTailnet", name, err)
			}
		})
	}
	t.Run("closed port is refused", func(t *testing.T) {
		c, err := n.DialTCP(ctx, netip.AddrPortFrom(sandbox.DemoAppIP, 81))
		if err == nil {
			c.Close()
			t.Fatal("dial closed port succeeded")
		}
	})
}

// apiClient is the official Tailscale API client pointed at the sandbox.
func apiClient(t *testing.T, sb *sandbox.Sandbox) *tsclient.Client {
	u, err := url.Parse(sb.APIURL())
	if err != nil {
		t.Fatal(err)
	}
	return &tsclient.Client{BaseURL: u, Tailnet: "-", APIKey: sb.NewAPIToken()}
}

func findDevice(devs []tsclient.Device, hostname string) *tsclient.Device {
	for i := range devs {
		if devs[i].Hostname == hostname {
			return &devs[i]
		}
	}
	return nil
}

func TestAPIListsRealNodes(t *testing.T) {
	sb := sharedSandbox(t)
	api := apiClient(t, sb)
	ctx := ctxT(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "tagged-runner", Tags: []string{"tag:ci"}})

	devs, err := api.Devices().List(ctx, tsclient.WithFields(tsclient.IncludeFieldsAll))
	if err != nil {
		t.Fatal(err)
	}
	router := findDevice(devs, sandbox.RouterName)
	if router == nil {
		t.Fatalf("router missing from %d devices", len(devs))
	}
	if !slices.Contains(router.AdvertisedRoutes, sandbox.ApprovedSubnet.String()) ||
		!slices.Contains(router.AdvertisedRoutes, sandbox.UnapprovedSubnet.String()) {
		t.Errorf("router advertised routes = %v", router.AdvertisedRoutes)
	}
	if !slices.Equal(router.EnabledRoutes, []string{sandbox.ApprovedSubnet.String()}) {
		t.Errorf("router enabled routes = %v, want only %v", router.EnabledRoutes, sandbox.ApprovedSubnet)
	}
	runner := findDevice(devs, "tagged-runner")
	if runner == nil {
		t.Fatal("joined node missing from the device list")
	}
	if !slices.Contains(runner.Tags, "tag:ci") || !slices.Contains(runner.Addresses, n.IPv4().String()) {
		t.Errorf("runner = tags %v addresses %v; want tag:ci and %v", runner.Tags, runner.Addresses, n.IPv4())
	}
	if !runner.IsEphemeral {
		t.Errorf("runner not reported ephemeral")
	}
}

func TestAPIApproveRouteChangesRouting(t *testing.T) {
	sb := sandboxtest.Start(t)
	api := apiClient(t, sb)
	ctx := ctxT(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "route-client", AcceptRoutes: true})
	if _, _, err := get(ctx, n, "http://"+sandbox.LegacyAppName+"/"); err == nil {
		t.Fatal("legacy app reachable before its route is approved")
	}
	devs, err := api.Devices().List(ctx, tsclient.WithFields(tsclient.IncludeFieldsAll))
	if err != nil {
		t.Fatal(err)
	}
	router := findDevice(devs, sandbox.RouterName)
	if err := api.Devices().SetSubnetRoutes(ctx, router.NodeID, []string{sandbox.ApprovedSubnet.String(), sandbox.UnapprovedSubnet.String()}); err != nil {
		t.Fatal(err)
	}
	// The node learns the new route from its next netmap.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, _, err := get(ctx, n, "http://"+sandbox.LegacyAppName+"/")
		if err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("legacy app still unreachable after approving its route: %d %v", code, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestAPIDeleteDeviceLogsNodeOut(t *testing.T) {
	sb := sharedSandbox(t)
	api := apiClient(t, sb)
	ctx := ctxT(t)
	n := newNode(t, sb, sandbox.NodeOptions{Hostname: "doomed"})
	devs, err := api.Devices().List(ctx, tsclient.WithFields(tsclient.IncludeFieldsAll))
	if err != nil {
		t.Fatal(err)
	}
	d := findDevice(devs, "doomed")
	if d == nil {
		t.Fatal("node not listed")
	}
	if err := api.Devices().Delete(ctx, d.NodeID); err != nil {
		t.Fatal(err)
	}
	devs, err = api.Devices().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if findDevice(devs, "doomed") != nil {
		t.Fatal("deleted device still listed")
	}
	// The node itself is out of the tailnet: it can no longer reach peers.
	deadline := time.Now().Add(15 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, time.Second)
		_, _, err := get(sctx, n, "http://"+sb.Device().IPv4().String()+"/")
		cancel()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("deleted node still reaches the tailnet")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := api.Devices().Delete(ctx, d.NodeID); err == nil || !tsclient.IsNotFound(err) {
		t.Errorf("deleting again: err = %v, want 404", err)
	}
}

func TestClosedEphemeralNodeLeavesDeviceList(t *testing.T) {
	sb := sharedSandbox(t)
	api := apiClient(t, sb)
	ctx := ctxT(t)
	n, err := sb.NewNode(ctx, sandbox.NodeOptions{Hostname: "short-lived"})
	if err != nil {
		t.Fatal(err)
	}
	n.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		devs, err := api.Devices().List(ctx, tsclient.WithFields(tsclient.IncludeFieldsAll))
		if err != nil {
			t.Fatal(err)
		}
		if findDevice(devs, "short-lived") == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("closed ephemeral node still listed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestCloseLeavesNoGoroutines starts and closes a whole sandbox with a
// client node and checks that nothing it started keeps running.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	// Warm up process-wide singletons (netmon, log policy) first, so that
	// what remains after Close is attributable to the sandbox.
	warm, err := sandbox.Start(ctxT(t), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	warm.Close()
	time.Sleep(500 * time.Millisecond)
	before := runtime.NumGoroutine()

	sb, err := sandbox.Start(ctxT(t), sandbox.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n, err := sb.NewNode(ctxT(t), sandbox.NodeOptions{Hostname: "leak-check", AcceptRoutes: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(ctxT(t), n, "http://"+sandbox.DemoAppName+"/"); err != nil {
		t.Fatal(err)
	}
	sb.Close() // closes the node too
	deadline := time.Now().Add(10 * time.Second)
	for {
		after := runtime.NumGoroutine()
		if after <= before+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after Close:\n%s", before, after, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
