# bench/gateway/setup.sh — the start both gateway scripts share; sourced.
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
