//go:build tools

// Package tools pins headscale as a build-time dependency of tailgate's
// tests. It lives in its own module so headscale's large dependency graph
// never enters the product's go.mod; build.sh builds the binary from here.
package tools

import _ "github.com/juanfont/headscale/cmd/headscale"
