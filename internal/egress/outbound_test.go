package egress_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageHasNoPathToHostNetwork reads the package's own source and fails
// if anything in it could dial or resolve around the tailnet: the Dialer and
// Resolver must stay the only way out.
func TestPackageHasNoPathToHostNetwork(t *testing.T) {
	forbidden := map[string]bool{
		"net.Dial": true, "net.DialTimeout": true, "net.DialTCP": true, "net.DialUDP": true, "net.DialIP": true,
		"net.Dialer": true, "net.Resolver": true, "net.DefaultResolver": true,
		"net.LookupHost": true, "net.LookupIP": true, "net.LookupAddr": true, "net.LookupNetIP": true,
		"net.ResolveTCPAddr": true, "net.ResolveIPAddr": true, "net.ResolveUDPAddr": true,
		"http.DefaultTransport": true, "http.DefaultClient": true, "http.Get": true, "http.Post": true,
		"http.ProxyFromEnvironment": true, "tls.Dial": true, "tls.DialWithDialer": true,
	}
	files, _ := filepath.Glob("*.go")
	checked := 0
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		fset := token.NewFileSet()
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range file.Imports {
			if p := strings.Trim(imp.Path.Value, `"`); strings.Contains(p, "tsnet") || p == "os/exec" {
				t.Errorf("%s imports %s", f, p)
			}
		}
		ast.Inspect(file, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && forbidden[id.Name+"."+sel.Sel.Name] {
				t.Errorf("%s: uses %s.%s, a way around the tailnet", fset.Position(sel.Pos()), id.Name, sel.Sel.Name)
			}
			return true
		})
	}
	if checked == 0 {
		t.Fatal("no package source found")
	}
}

// TestCurlThroughProxy drives the proxy with curl, a client we did not write:
// -x (absolute-URI and CONNECT) and --socks5-hostname (names resolved by us).
func TestCurlThroughProxy(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl is not installed; the Go clients cover the same protocols")
	}
	e := newEnv(t)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(curl, append([]string{"-sS", "--max-time", "10", "--noproxy", ""}, args...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()} // no *_proxy variables
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	proxyURL := "http://" + e.addr.String()
	for _, args := range [][]string{
		{"-x", proxyURL, "http://app.internal.example/"},
		{"-x", proxyURL, "-k", "https://secure.internal.example/"},
		{"--socks5-hostname", e.addr.String(), "http://app.internal.example/"},
	} {
		out, err := run(args...)
		if err != nil || !strings.Contains(out, "Hello from the private app") {
			t.Errorf("curl %v: %v\n%s", args, err, out)
		}
	}
	out, _ := run("-x", proxyURL, "-i", "http://example.com/")
	if !strings.Contains(out, "403") || !strings.Contains(out, "X-Tailgate-Refusal: not_a_target") ||
		!strings.Contains(out, "example.com:80 is not a target of this environment") {
		t.Errorf("curl to a public name through the proxy:\n%s", out)
	}
	if _, err := run("--socks5-hostname", e.addr.String(), "http://example.com/"); err == nil {
		t.Error("curl over SOCKS5 to a public name succeeded")
	}
	for _, name := range e.tailnet.Lookups() {
		if name == "example.com" {
			t.Error("a refused public name was resolved")
		}
	}
}
