# bench/gateway/setup.sh — the start and the measuring helpers the gateway
# scripts share; sourced.
#
# bench_setup NAME TOOL...: exits with "skipping:" (what go run
# ./bench/report reads as a skipped suite) unless every TOOL is installed;
# sets ROOT, WORK (a temporary directory removed on exit) and PIDS (killed
# on exit); builds gatewaybench into $WORK and mints a token ($TOKEN) and
# its JWKS ($WORK/jwks.json).
bench_setup() {
	local name=$1 bin
	shift
	for bin in "$@"; do
		command -v "$bin" >/dev/null || { echo "skipping: missing $bin (apt-get install -y ${*/go/})" >&2; exit 1; }
	done
	ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	WORK=$(mktemp -d "/tmp/$name.XXXXXX")
	PIDS=()
	trap bench_cleanup EXIT
	echo "# building gatewaybench" >&2
	(cd "$ROOT" && GOFLAGS=-mod=mod go build -o "$WORK/gatewaybench" ./bench/gateway/gatewaybench)
	"$WORK/gatewaybench" mint -dir "$WORK" 2>/dev/null
	TOKEN=$(cat "$WORK/token")
}

bench_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$WORK"
}

# wait_port PORT: until something listens on 127.0.0.1:PORT (10 s).
wait_port() {
	for _ in $(seq 1 200); do
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		sleep 0.05
	done
	echo "port $1 never opened" >&2
	return 1
}

# write_configs TG TGBARE BE: the two gateway configs the scripts compare,
# in $WORK/tailgate.yaml (networkAuthorization + jwtAuth, strict, RS256,
# the JWKS bench_setup wrote + an authorization rule on the claims, on
# port TG) and $WORK/tailgate-bare.yaml (the same route with no policy, on
# TGBARE), both to the backend on port BE.
write_configs() {
	cat >"$WORK/tailgate.yaml" <<EOC
frontendPolicies:
  networkAuthorization:
    rules:
    - allow: 'cidr("127.0.0.0/8").containsIP(source.address)'
binds:
- port: $1
  listeners:
  - name: default
    protocol: HTTP
    routes:
    - name: app
      policies:
        jwtAuth:
          mode: strict
          issuer: https://idp.bench.example
          audiences: [gateway]
          jwks: {file: $WORK/jwks.json}
        authorization:
          rules:
          - 'jwt.sub == "bench"'
      backends:
      - host: 127.0.0.1:$3
EOC
	cat >"$WORK/tailgate-bare.yaml" <<EOC
binds:
- port: $2
  listeners:
  - name: default
    protocol: HTTP
    routes:
    - name: app
      backends:
      - host: 127.0.0.1:$3
EOC
}

# cpu_ticks PID: user + system clock ticks of a process and its children
# (nginx's workers).
cpu_ticks() {
	local total=0 p
	for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$total"
}

# to_ms LATENCY: wrk's latency (1.23ms, 812.00us, 1.01s) in milliseconds.
to_ms() {
	awk -v v="$1" 'BEGIN {
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
		else print v }'
}

# median NUMBER...: their median.
median() {
	printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
