#!/usr/bin/env bash
# Builds headscale v0.29.2 (the control server tailgate's end-to-end tests
# run against) once per machine into a cache directory, and prints its path.
# Skips the build when the binary is already there. Tests find it through
# $TAILGATE_HEADSCALE or this same cache path (see internal/hstest).
set -euo pipefail
cd "$(dirname "$0")"

version=v0.29.2
cache="${XDG_CACHE_HOME:-$HOME/.cache}/tailgate/headscale-$version"
bin="$cache/headscale"

if [ -x "$bin" ]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$cache"
# A separate module: headscale's dependencies never touch the product's go.mod.
# GOFLAGS is reset so a caller's -mod=mod cannot rewrite this module's files.
GOFLAGS=-mod=readonly GOWORK=off go build -trimpath -o "$bin.tmp" github.com/juanfont/headscale/cmd/headscale
mv "$bin.tmp" "$bin"
echo "$bin"
