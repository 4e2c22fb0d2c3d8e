#!/usr/bin/env bash
# bench/gateway/policycost.sh — what run.sh's policies cost, measured so
# that other load on a shared machine falls on both sides alike.
#
# run.sh measures the tailgate route (networkAuthorization + jwtAuth +
# an authorization rule on jwt.sub) and the same route without policy
# (tg-bare) one after the other, each once; on a busy 2-core machine the
# CPU-per-request ratio of the two moves by tens of percent between runs.
# This script starts only the backend and those two gateways (the same
# configs) and alternates short wrk runs between them, ROUNDS times,
# reading each gateway's CPU ticks around its own runs. It prints every
# round's ratio, and the ratio of the totals and the median round's.
#
# Needs: go, wrk. Knobs: ROUNDS (8), SLICE (3s), CONNS (32), THREADS (2),
# BASE_PORT (18180).
set -euo pipefail

ROUNDS=${ROUNDS:-8}
SLICE=${SLICE:-3s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
BASE=${BASE_PORT:-18180}
BE=$BASE TG=$((BASE + 1)) TGBARE=$((BASE + 2))

# shellcheck source=setup.sh
source "$(dirname "$0")/setup.sh"
bench_setup policycost go wrk

"$WORK/gatewaybench" backend -addr "127.0.0.1:$BE" &
PIDS+=($!)

write_configs "$TG" "$TGBARE" "$BE" # run.sh's two configs

declare -A PID
for n in tailgate tailgate-bare; do
	"$WORK/gatewaybench" gateway -f "$WORK/$n.yaml" -access-log "$WORK/$n-access.log" 2>"$WORK/$n.log" &
	PID[$n]=$!
	PIDS+=($!)
done
for p in $BE $TG $TGBARE; do wait_port "$p"; done
for p in $TG $TGBARE; do
	code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$p/")
	[ "$code" = 200 ] || { echo "port $p answered $code" >&2; exit 1; }
done

# slice NAME PORT: one wrk run; prints "ticks requests".
slice() {
	local t0 t1 out
	t0=$(cpu_ticks "${PID[$1]}")
	out=$(wrk -t"$THREADS" -c"$CONNS" -d"$SLICE" -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$2/")
	t1=$(cpu_ticks "${PID[$1]}")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$1: non-2xx responses" >&2
		exit 1
	fi
	echo "$((t1 - t0)) $(awk '/ requests in / {print $1}' <<<"$out")"
}

HZ=$(getconf CLK_TCK)
echo "# wrk -t$THREADS -c$CONNS, $ROUNDS rounds of $SLICE per side, $(nproc) cores, $(date -u +%FT%TZ)" >&2
wrk -t"$THREADS" -c"$CONNS" -d2s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$TG/" >/dev/null
wrk -t"$THREADS" -c"$CONNS" -d2s -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$TGBARE/" >/dev/null
ROWS=$(for r in $(seq 1 "$ROUNDS"); do
	# Alternate which side goes first, so neither always follows the other.
	if ((r % 2)); then
		read -r ct nt < <(slice tailgate "$TG")
		read -r cb nb < <(slice tailgate-bare "$TGBARE")
	else
		read -r cb nb < <(slice tailgate-bare "$TGBARE")
		read -r ct nt < <(slice tailgate "$TG")
	fi
	echo "$r $ct $nt $cb $nb"
done)
MEDIAN=$(awk -v hz="$HZ" '{ print ($2 / $3) / ($4 / $5) }' <<<"$ROWS" | sort -g |
	awk '{ v[NR] = $1 } END { printf "%.3f", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
printf '%-6s %16s %16s %8s\n' round "tailgate µs/req" "tg-bare µs/req" ratio
awk -v hz="$HZ" -v med="$MEDIAN" '
	{
		t = $2 * 1e6 / hz / $3; b = $4 * 1e6 / hz / $5
		printf "%-6s %16.1f %16.1f %8.3f\n", $1, t, b, t / b
		ct += $2; nt += $3; cb += $4; nb += $5
	}
	END {
		t = ct * 1e6 / hz / nt; b = cb * 1e6 / hz / nb
		printf "\ntotal  %16.1f %16.1f %8.3f\nmedian round ratio %.3f\n", t, b, t / b, med
		printf "\nBenchmarkGatewayPolicyCost 1 %.1f tailgate-cpu-us/req %.1f tg-bare-cpu-us/req %.3f ratio %.3f median-ratio\n", t, b, t / b, med
	}' <<<"$ROWS"
