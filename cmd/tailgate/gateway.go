package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/tailgate-dev/tailgate/internal/gateway"
	"github.com/tailgate-dev/tailgate/internal/gateway/config"
	"github.com/tailgate-dev/tailgate/internal/gcfloor"
)

func init() {
	register(command{
		name:    "gateway",
		summary: "run an agentgateway-compatible gateway from a config file (-f config.yaml)",
		run:     runGateway,
	})
}

func runGateway(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("gateway", stderr)
	file := fs.String("f", "", "agentgateway config `file` (YAML)")
	fs.StringVar(file, "file", "", "same as -f")
	validateOnly := fs.Bool("validate-only", false, "load and compile the config, report every problem, and exit")
	admin := fs.String("admin", "", "admin `address` for the admin page /ui, /metrics, /healthz/ready and /config_dump (default: the config's adminAddr, else 127.0.0.1:15000; \"off\" disables)")
	bindHost := fs.String("bind-host", "", "`host` to bind ports on (default: all interfaces, like agentgateway)")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json")
	pprofOn := fs.Bool("pprof", false, "also serve /debug/pprof/ on the admin address (profiles show request data: keep the admin address private)")
	fastFront := fs.Bool("fast-front", true, "serve plain GET/HEAD/OPTIONS on HTTP and HTTPS binds with the fast HTTP/1.1 front (fasthttp); false serves everything with net/http")
	maxConfigBytes := fs.Int64("max-config-bytes", config.DefaultMaxBytes, "largest config `size` in bytes that is loaded or reloaded; a larger file is refused unread")
	heapFloor := fs.Int("gc-heap-floor-mib", gcfloor.DefaultFloor>>20, "let the heap grow to this many `MiB` (or twice the live heap, if more) before a garbage collection; 0 keeps Go's default of twice the live heap; ignored when GOGC is set")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" {
		return usageError{"-f config.yaml is required"}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected arguments: %v", fs.Args())}
	}
	if *heapFloor < 0 {
		return usageError{fmt.Sprintf("--gc-heap-floor-mib must be 0 or more, not %d", *heapFloor)}
	}
	if *maxConfigBytes <= 0 {
		return usageError{fmt.Sprintf("--max-config-bytes must be positive, not %d", *maxConfigBytes)}
	}
	h, err := logHandler(*logFormat, stderr)
	if err != nil {
		return err
	}
	if *validateOnly {
		warnings, err := gateway.Check(*file, gateway.CheckOptions{MaxConfigBytes: *maxConfigBytes})
		if err != nil {
			return err
		}
		// Warnings go to stderr and do not fail the check: the config is
		// valid, and scripts that read stdout still see "ok".
		for _, w := range warnings {
			fmt.Fprintf(stderr, "warning: %s\n", w)
		}
		fmt.Fprintf(stdout, "%s: ok\n", *file)
		return nil
	}
	// Few collections for a gateway that keeps little alive but
	// allocates with every request (package gcfloor).
	gcfloor.Run(ctx, uint64(*heapFloor)<<20)
	return gateway.Run(ctx, gateway.Options{
		ConfigPath: *file,
		Logger:     slog.New(h),
		AdminAddr:  *admin,
		BindHost:   *bindHost,
		AccessLog:  stderr,
		Pprof:      *pprofOn,

		NoFastFront:    !*fastFront,
		MaxConfigBytes: *maxConfigBytes,
	})
}
