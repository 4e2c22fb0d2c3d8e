#!/usr/bin/env bash
# bench/gateway/ab.sh — is a change to the gateway faster? Two builds side
# by side under wrk.
#
#   bash bench/gateway/ab.sh [A [B]]
#
# A and B are git revisions (A defaults to HEAD); B defaults to the work
# tree as it is, uncommitted changes included. Both builds serve the
# bench's policies route (networkAuthorization + jwtAuth + authorization,
# as run.sh's tailgate; CONFIG=tailgate-bare for the route with no policy)
# in front of one backend, and wrk takes turns between them: ROUNDS (8)
# rounds of DURATION (3s) each, B and A in alternating order. A run
# reports, per figure, the median of the rounds' B ÷ A ratios:
# requests/s, p99 latency, and CPU time a request of each gateway process
# (user + system from /proc). RUNS (4) runs, and between runs the builds
# swap ports and start order, so that neither gains from its place. The
# last line is the median over the runs.
#
# Why this and not run.sh twice: this VM's speed drifts by tens of
# percent within minutes, and runs of run.sh minutes apart differ by more
# than most changes. Side by side, a run of this is good to about ±5 %
# (the same build against itself gave 0.85–1.02×, three runs of four
# within 1.00–1.02×); several runs resolve a few percent.
#
# Needs: go, git, wrk (apt-get install -y wrk).
# Knobs: RUNS, ROUNDS, DURATION, CONNS (32), THREADS (2), CONFIG,
# BASE_PORT (18180).
set -euo pipefail

RUNS=${RUNS:-4}
ROUNDS=${ROUNDS:-8}
DURATION=${DURATION:-3s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
CONFIG=${CONFIG:-tailgate}
BASE=${BASE_PORT:-18180}
BE=$BASE P1=$((BASE + 1)) P2=$((BASE + 2))
A=${1:-HEAD}
B=${2:-}

# shellcheck source=setup.sh
source "$(dirname "$0")/setup.sh"
bench_setup gatewaybench-ab go git wrk

# build REV OUT: gatewaybench as of REV.
build() {
	local tree="$WORK/tree-$2"
	git -C "$ROOT" worktree add -q --detach "$tree" "$1"
	(cd "$tree" && GOFLAGS=-mod=mod go build -o "$WORK/$2" ./bench/gateway/gatewaybench)
	git -C "$ROOT" worktree remove --force "$tree"
}
echo "# building A ($A)" >&2
build "$A" gb-a
if [ -n "$B" ]; then
	echo "# building B ($B)" >&2
	build "$B" gb-b
else
	cp "$WORK/gatewaybench" "$WORK/gb-b" # bench_setup built the work tree
fi

write_configs "$P1" "$P1" "$BE"
sed "s/port: $P1/port: $P2/" "$WORK/$CONFIG.yaml" >"$WORK/second.yaml"
cp "$WORK/$CONFIG.yaml" "$WORK/first.yaml"

"$WORK/gatewaybench" backend -addr "127.0.0.1:$BE" &
PIDS+=($!)
wait_port "$BE"

# load PORT PID: one wrk round; prints requests/s, p99 (ms) and the
# process's CPU µs a request.
load() {
	local t0 t1 out
	t0=$(cpu_ticks "$2")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$1/")
	t1=$(cpu_ticks "$2")
	awk -v ticks=$((t1 - t0)) -v hz="$(getconf CLK_TCK)" -v p99="$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")" '
		/Requests\/sec/ { rps = $2 }
		/ requests in / { n = $1 }
		END { printf "%s %s %.2f\n", rps, p99, ticks * 1e6 / hz / n }' <<<"$out"
}

printf '# %s rounds of wrk -t%s -c%s -d%s a run, %s runs, %s, %s\n' "$ROUNDS" "$THREADS" "$CONNS" "$DURATION" "$RUNS" "$CONFIG" "$(date -u +%FT%TZ)"
printf '%-5s %-20s %14s %10s %14s\n' run "A on, B on" "B÷A req/s" "B÷A p99" "B÷A CPU/req"
: >"$WORK/runs"
for run in $(seq "$RUNS"); do
	# Odd runs: A first, on the first port; even runs: B.
	if [ $((run % 2)) = 1 ]; then first=gb-a second=gb-b; else first=gb-b second=gb-a; fi
	"$WORK/$first" gateway -f "$WORK/first.yaml" -access-log "$WORK/first-access.log" 2>"$WORK/first.log" &
	pid1=$!
	"$WORK/$second" gateway -f "$WORK/second.yaml" -access-log "$WORK/second-access.log" 2>"$WORK/second.log" &
	pid2=$!
	PIDS+=("$pid1" "$pid2")
	wait_port "$P1"
	wait_port "$P2"
	if [ "$first" = gb-a ]; then pa=$P1 ida=$pid1 pb=$P2 idb=$pid2; else pa=$P2 ida=$pid2 pb=$P1 idb=$pid1; fi
	load "$pa" "$ida" >/dev/null # warm-up
	load "$pb" "$idb" >/dev/null
	: >"$WORK/rounds"
	for r in $(seq "$ROUNDS"); do
		if [ $((r % 2)) = 1 ]; then fa=$(load "$pa" "$ida"); fb=$(load "$pb" "$idb"); else fb=$(load "$pb" "$idb"); fa=$(load "$pa" "$ida"); fi
		echo "$fa $fb" >>"$WORK/rounds"
	done
	kill "$pid1" "$pid2"
	wait "$pid1" "$pid2" 2>/dev/null || true
	rps=$(median $(awk '{ print $4 / $1 }' "$WORK/rounds"))
	p99=$(median $(awk '{ print $5 / $2 }' "$WORK/rounds"))
	cpu=$(median $(awk '{ print $6 / $3 }' "$WORK/rounds"))
	echo "$rps $p99 $cpu" >>"$WORK/runs"
	printf '%-5s %-20s %14.3f %10.3f %14.3f\n' "$run" "A :$pa, B :$pb" "$rps" "$p99" "$cpu"
done
printf '%-26s %14.3f %10.3f %14.3f\n' "median of the runs" \
	"$(median $(awk '{ print $1 }' "$WORK/runs"))" \
	"$(median $(awk '{ print $2 }' "$WORK/runs"))" \
	"$(median $(awk '{ print $3 }' "$WORK/runs"))"
