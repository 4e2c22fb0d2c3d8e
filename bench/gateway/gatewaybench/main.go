// Command gatewaybench is the tailgate side of bench/gateway/run.sh:
//
//	gatewaybench backend -addr 127.0.0.1:18080   # the shared 1 KiB backend
//	gatewaybench mint -dir DIR                   # RSA key → DIR/jwks.json, DIR/token; DIR/cert.pem, DIR/key.pem (self-signed, 127.0.0.1)
//	gatewaybench gateway -f config.yaml          # gateway.Run, as `tailgate gateway` will
//	gatewaybench floor -addr A -backend B -access-log F  # the floor: a bare fasthttp proxy
//
// It exists so the benchmark does not depend on cmd/tailgate's wiring.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/tailgate-dev/tailgate/internal/gateway"
	"github.com/tailgate-dev/tailgate/internal/gcfloor"
	"github.com/tailgate-dev/tailgate/internal/selfsigned"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: gatewaybench backend|mint|gateway|floor [flags]")
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	switch os.Args[1] {
	case "backend":
		addr := fs.String("addr", "127.0.0.1:18080", "listen address")
		fs.Parse(os.Args[2:])
		body := []byte(strings.Repeat("x", 1024))
		log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.Write(body)
		})))
	case "floor":
		addr := fs.String("addr", "127.0.0.1:18086", "listen address")
		backend := fs.String("backend", "127.0.0.1:18080", "backend address")
		accessLog := fs.String("access-log", "floor-access.log", "access log file")
		fs.Parse(os.Args[2:])
		log.Fatal(floor(*addr, *backend, *accessLog))
	case "mint":
		dir := fs.String("dir", ".", "output directory")
		fs.Parse(os.Args[2:])
		if err := mint(*dir); err != nil {
			log.Fatal(err)
		}
	case "gateway":
		cfg := fs.String("f", "config.yaml", "gateway config")
		admin := fs.String("admin", "127.0.0.1:0", "admin address")
		accessLog := fs.String("access-log", "", "access log file (default stderr)")
		cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here")
		pprofOn := fs.Bool("pprof", false, "serve /debug/pprof/ on the admin address")
		noFast := fs.Bool("no-fast-front", false, "serve every bind with net/http alone (gateway.Options.NoFastFront)")
		heapFloor := fs.Int("gc-heap-floor-mib", gcfloor.DefaultFloor>>20, "as tailgate gateway's flag (package gcfloor)")
		fs.Parse(os.Args[2:])
		if *cpuProfile != "" {
			f, err := os.Create(*cpuProfile)
			if err != nil {
				log.Fatal(err)
			}
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		opts := gateway.Options{ConfigPath: *cfg, AdminAddr: *admin, BindHost: "127.0.0.1", Pprof: *pprofOn, NoFastFront: *noFast, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
		if *accessLog != "" {
			f, err := os.Create(*accessLog)
			if err != nil {
				log.Fatal(err)
			}
			defer f.Close()
			opts.AccessLog = f
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		gcfloor.Run(ctx, uint64(*heapFloor)<<20)
		if err := gateway.Run(ctx, opts); err != nil {
			log.Print(err)
		}
	default:
		log.Fatalf("unknown command %q", os.Args[1])
	}
}

func mint(dir string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}}
	b, _ := json.Marshal(set)
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), b, 0o600); err != nil {
		return err
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return err
	}
	now := time.Now()
	tok, err := jwt.Signed(sig).Claims(jwt.Claims{
		Issuer: "https://idp.bench.example", Subject: "bench", Audience: jwt.Audience{"gateway"},
		Expiry: jwt.NewNumericDate(now.Add(24 * time.Hour)), IssuedAt: jwt.NewNumericDate(now),
	}).Serialize()
	if err != nil {
		return err
	}
	fmt.Fprintln(os.Stderr, "minted", filepath.Join(dir, "jwks.json"))
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(tok), 0o600); err != nil {
		return err
	}
	// For run.sh's HTTPS listeners (wrk does not verify it).
	_, _, err = selfsigned.WriteFiles(dir, "", "127.0.0.1")
	return err
}
