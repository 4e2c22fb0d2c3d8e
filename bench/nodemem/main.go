// Command nodemem measures what one tailnet node costs in memory in a
// plain program, the way tailgate serve holds a run's node. Under go test
// tsnet leaves out its log machinery (logtail writing every node's log
// lines to files in the node's directory, to upload them), so the
// benchmarks in bench/run cannot see that part; this program can.
//
//	go run ./bench/nodemem -n 50                  # tsnet as tailgate serve runs it
//	go run ./bench/nodemem -n 50 -logtail=true    # with logtail's buffering on (serve before it turned it off)
//
// It starts the sandbox tailnet in a child process (package
// bench/sandboxproc), with a policy under which the nodes reach the
// private app and not each other, joins -n nodes the way a run does
// (ephemeral, routes accepted), has each fetch the first byte of the
// private app through the tailnet -fetches times, and prints resident
// memory and live heap per node, before and after a full collection.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"tailscale.com/envknob"

	"github.com/tailgate-dev/tailgate/bench/measure"
	"github.com/tailgate-dev/tailgate/bench/sandboxproc"
	"github.com/tailgate-dev/tailgate/internal/sandbox"
	"github.com/tailgate-dev/tailgate/internal/tailnet"
)

// policy lets every node reach the private app behind the router, and
// nothing else: nodes are the router's peers, not each other's.
const policy = `{"grants": [{"src": ["*"], "dst": ["192.0.2.0/24"], "ip": ["80"]}]}`

func main() {
	sandboxproc.Child()
	n := flag.Int("n", 50, "nodes to join")
	fetches := flag.Int("fetches", 20, "first bytes of the private app each node fetches")
	keepLogtail := flag.Bool("logtail", false, "keep tsnet's logtail buffering on, as before tailgate turned it off")
	flag.Parse()
	if err := run(*n, *fetches, *keepLogtail); err != nil {
		fmt.Fprintln(os.Stderr, "nodemem:", err)
		os.Exit(1)
	}
}

func run(n, fetches int, keepLogtail bool) error {
	if keepLogtail {
		// Uploads off, as tailgate's main has always set, but logtail on.
		envknob.SetNoLogsNoSupport()
	} else {
		tailnet.KeepTailscaleLogsLocal()
	}
	p, err := sandboxproc.Launch(policy)
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	runtime.GC()
	rss0, heap0 := measure.RSSBytes(), measure.HeapBytes()
	cpu0 := cpuTime()
	nodes := make([]*tailnet.Node, n)
	errs := make(chan error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			node, err := tailnet.Join(ctx, tailnet.JoinOptions{
				ControlURL:   p.ControlURL,
				AuthKey:      "nodemem", // the sandbox lets any key join
				Hostname:     fmt.Sprintf("nodemem-%d", i),
				AcceptRoutes: true,
			})
			if err != nil {
				errs <- err
				return
			}
			nodes[i] = node
			// As a run does before it is ready: a fresh node's first
			// connection otherwise stalls until its peer learns its keys.
			if err := node.WarmPath(ctx, sandbox.DemoAppIP); err != nil {
				errs <- err
				return
			}
			for range fetches {
				if err := fetch(ctx, node); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	defer func() {
		for _, node := range nodes {
			if node != nil {
				node.Close()
			}
		}
	}()
	select {
	case err := <-errs:
		return err
	default:
	}
	rssLoaded := measure.RSSBytes()
	runtime.GC()
	rss1, heap1 := measure.RSSBytes(), measure.HeapBytes()
	mb := func(d int64) float64 { return float64(d) / float64(n) / (1 << 20) }
	fmt.Printf("nodes %d logtail %v: MB-RSS-per-node %.2f (before a forced GC %.2f), MB-heap-per-node %.2f, excl. wireguard-go batches %.2f, CPU-ms-per-node %.1f\n",
		n, keepLogtail, mb(rss1-rss0), mb(rssLoaded-rss0), mb(heap1-heap0), mb(heap1-heap0-int64(n)*4*128*65535), (cpuTime()-cpu0).Seconds()*1000/float64(n))
	return nil
}

// fetch reads the first byte of the private app through node.
func fetch(ctx context.Context, node *tailnet.Node) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := node.DialTCP(ctx, netip.AddrPortFrom(sandbox.DemoAppIP, 80))
	if err != nil {
		return err
	}
	return measure.FirstByte(c, sandbox.DemoAppName)
}

// cpuTime is the CPU time this process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
