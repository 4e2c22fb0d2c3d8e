#!/usr/bin/env bash
# bench/gateway/run.sh — tailgate gateway vs nginx vs Caddy, one run, one machine.
#
# Starts one backend (1 KiB body), nginx and Caddy (Debian packages) as
# plain reverse proxies to it, and the tailgate gateway with
# networkAuthorization + jwtAuth (strict, RS256, JWKS file) + an
# authorization rule on the claims, and a second tailgate gateway with the
# same route and no policy at all (tg-bare), and that bare route once more
# on net/http alone, without the fast front (tg-nethttp), and the gateway's floor:
# a bare fasthttp reverse proxy that logs each request and does nothing else
# (floor; gatewaybench floor); and nginx and tailgate with the policies once
# more over TLS (nginx-tls, tailgate-tls: HTTPS listeners, a self-signed
# P-256 certificate, HTTP/1.1). Runs wrk against each (and
# against the backend directly), prints requests/s, p99 latency, the
# process's CPU time per request (user + system, from /proc; steadier than
# requests/s on a shared machine), resident memory (idle, and peak under
# load), and tailgate's ratios to each.
#
# The targets take turns in ROUNDS rounds (each target DURATION a round,
# after a warm-up), and every figure is the median of its rounds; the
# ratios are medians of each round's ratio, so that a VM whose speed
# drifts by tens of percent within minutes (as this project's does)
# compares targets measured seconds apart, not a minute.
#
# Needs: go, wrk, nginx, caddy (apt-get install -y wrk nginx caddy).
# Knobs: ROUNDS (3), DURATION (4s), CONNS (32), THREADS (2), BASE_PORT (18080).
# Every proxy logs each request to a file, as tailgate always does.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-4s}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
BASE=${BASE_PORT:-18080}
BE=$BASE NGX=$((BASE + 1)) CADDY=$((BASE + 2)) TG=$((BASE + 3)) TGBARE=$((BASE + 4)) TGNH=$((BASE + 5)) FLOOR=$((BASE + 6))
NGXTLS=$((BASE + 7)) TGTLS=$((BASE + 8))

# shellcheck source=setup.sh
source "$(dirname "$0")/setup.sh"
bench_setup gatewaybench go wrk nginx caddy

rss_kb() { # total VmRSS of a process and its children (nginx workers)
	local total=0 p
	for p in $1 $(pgrep -P "$1" 2>/dev/null || true); do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

# start_gateway NAME [FLAGS]: tailgate gateway on $WORK/NAME.yaml, its
# access log in $WORK/NAME-access.log and its own log in $WORK/NAME.log;
# its PID in GATEWAY_PID.
start_gateway() {
	"$WORK/gatewaybench" gateway -f "$WORK/$1.yaml" -access-log "$WORK/$1-access.log" "${@:2}" 2>"$WORK/$1.log" &
	GATEWAY_PID=$!
	PIDS+=("$GATEWAY_PID")
}

# --- backend
"$WORK/gatewaybench" backend -addr "127.0.0.1:$BE" &
BE_PID=$!
PIDS+=("$BE_PID")

# --- nginx
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log;
events { worker_connections 4096; }
http {
	access_log $WORK/nginx/access.log;
	client_body_temp_path $WORK/nginx/body;
	proxy_temp_path $WORK/nginx/proxy;
	fastcgi_temp_path $WORK/nginx/fastcgi;
	uwsgi_temp_path $WORK/nginx/uwsgi;
	scgi_temp_path $WORK/nginx/scgi;
	upstream backend { server 127.0.0.1:$BE; keepalive 64; }
	server {
		listen 127.0.0.1:$NGX;
		listen 127.0.0.1:$NGXTLS ssl;
		ssl_certificate $WORK/cert.pem;
		ssl_certificate_key $WORK/key.pem;
		location / {
			proxy_pass http://backend;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
		}
	}
}
EOF
nginx -c "$WORK/nginx/nginx.conf" -g 'daemon off;' &
NGX_PID=$!
PIDS+=("$NGX_PID")

# --- caddy
cat >"$WORK/Caddyfile" <<EOF
{
	admin off
	auto_https off
}
http://127.0.0.1:$CADDY {
	log {
		output file $WORK/caddy-access.log
	}
	reverse_proxy 127.0.0.1:$BE
}
EOF
XDG_DATA_HOME=$WORK XDG_CONFIG_HOME=$WORK caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
CADDY_PID=$!
PIDS+=("$CADDY_PID")

# --- tailgate gateway: networkAuthorization + jwtAuth + authorization,
# and the same route without any policy (setup.sh's write_configs)
write_configs "$TG" "$TGBARE" "$BE"
start_gateway tailgate
TG_PID=$GATEWAY_PID
start_gateway tailgate-bare
TGBARE_PID=$GATEWAY_PID

# --- the bare route again, served by net/http alone (no fast front)
sed "s/port: $TGBARE/port: $TGNH/" "$WORK/tailgate-bare.yaml" >"$WORK/tailgate-nethttp.yaml"
start_gateway tailgate-nethttp -no-fast-front
TGNH_PID=$GATEWAY_PID

# --- the policies gateway again, on an HTTPS listener
sed "s/port: $TG\$/port: $TGTLS/; s|^    protocol: HTTP\$|    protocol: HTTPS\n    tls: {cert: $WORK/cert.pem, key: $WORK/key.pem}|" \
	"$WORK/tailgate.yaml" >"$WORK/tailgate-tls.yaml"
start_gateway tailgate-tls
TGTLS_PID=$GATEWAY_PID

# --- the floor: fasthttp's proxy and an access line, nothing else
"$WORK/gatewaybench" floor -addr "127.0.0.1:$FLOOR" -backend "127.0.0.1:$BE" -access-log "$WORK/floor-access.log" 2>"$WORK/floor.log" &
FLOOR_PID=$!
PIDS+=("$FLOOR_PID")

for p in $BE $NGX $CADDY $TG $TGBARE $TGNH $FLOOR $NGXTLS $TGTLS; do wait_port "$p"; done
sleep 1

# Sanity: every target answers 200, and tailgate refuses a request without a token.
for url in http://127.0.0.1:{$BE,$NGX,$CADDY,$TG,$TGBARE,$TGNH,$FLOOR}/ https://127.0.0.1:{$NGXTLS,$TGTLS}/; do
	code=$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url")
	[ "$code" = 200 ] || { echo "$url answered $code" >&2; exit 1; }
done
for url in "http://127.0.0.1:$TG/" "https://127.0.0.1:$TGTLS/"; do
	code=$(curl -sk -o /dev/null -w '%{http_code}' "$url")
	[ "$code" = 401 ] || { echo "tailgate without a token at $url answered $code, want 401" >&2; exit 1; }
done

# Per target: RPS, P99, TAIL and CPU are the rounds' figures,
# space-separated, until the medians replace them; PEAK is the highest RSS
# of any round. TAIL is p99 ÷ mean latency, the shape of the latency
# distribution. wrk holds CONNS requests in flight, so a target's mean
# latency is CONNS ÷ its requests/s (Little's law), and its p99 is that
# times TAIL: between two targets, the p99 ratio is the inverse of their
# throughput ratio times their TAIL ratio. A TAIL ratio near 1 says the
# p99 differs only because the throughput does.
declare -A RPS P99 TAIL IDLE PEAK CPU
run() { # name port pid [scheme]
	local name=$1 port=$2 pid=$3 url="${4:-http}://127.0.0.1:$2/" out peak=${PEAK[$1]:-0} r c0 c1
	[ -n "${IDLE[$name]:-}" ] || IDLE[$name]=$(rss_kb "$pid")
	# warm-up, then the measured run with RSS sampled every 0.2 s
	wrk -t"$THREADS" -c"$CONNS" -d1s -H "Authorization: Bearer $TOKEN" "$url" >/dev/null
	wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency -H "Authorization: Bearer $TOKEN" "$url" >"$WORK/wrk-$name.txt" &
	local wpid=$!
	c0=$(cpu_ticks "$pid")
	while kill -0 "$wpid" 2>/dev/null; do
		r=$(rss_kb "$pid")
		[ "$r" -gt "$peak" ] && peak=$r
		sleep 0.2
	done
	wait "$wpid"
	c1=$(cpu_ticks "$pid")
	out=$(cat "$WORK/wrk-$name.txt")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "$name: non-2xx responses during the run:" >&2
		echo "$out" >&2
		exit 1
	fi
	RPS[$name]+=" $(awk '/^Requests\/sec:/ {print $2}' <<<"$out")"
	P99[$name]+=" $(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")"
	TAIL[$name]+=" $(awk -v p99="${P99[$name]##* }" -v mean="$(to_ms "$(awk '$1 == "Latency" {print $2; exit}' <<<"$out")")" \
		'BEGIN { printf "%.2f", p99 / mean }')"
	PEAK[$name]=$peak
	CPU[$name]+=" $(awk -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v n="$(awk '/ requests in / {print $1}' <<<"$out")" \
		'BEGIN { printf "%.1f", c * 1e6 / hz / n }')"
}

ratios() { # "a1 a2 ..." "b1 b2 ..." → the rounds' a/b, space-separated
	awk -v a="$1" -v b="$2" 'BEGIN { n = split(a, x, " "); split(b, y, " "); for (i = 1; i <= n; i++) printf "%.2f ", x[i] / y[i] }'
}

echo "# wrk -t$THREADS -c$CONNS -d$DURATION, $ROUNDS rounds, 1 KiB responses, $(nproc) cores, $(date -u +%FT%TZ)" >&2
for _ in $(seq "$ROUNDS"); do
	run direct "$BE" "$BE_PID"
	run nginx "$NGX" "$NGX_PID"
	run caddy "$CADDY" "$CADDY_PID"
	run tailgate "$TG" "$TG_PID"
	run tg-bare "$TGBARE" "$TGBARE_PID"
	run tg-nethttp "$TGNH" "$TGNH_PID"
	run floor "$FLOOR" "$FLOOR_PID"
	run nginx-tls "$NGXTLS" "$NGX_PID" https
	run tailgate-tls "$TGTLS" "$TGTLS_PID" https
done

TARGETS="direct nginx caddy tailgate tg-bare tg-nethttp floor nginx-tls tailgate-tls"
# The ratios reported, as "a/b" (a's figure over b's, round by round):
# tailgate with the policies to every baseline, the floor to nginx (what
# any Go proxy on fasthttp reaches here), and the two over TLS. The
# benchmark line carries those in REPORTED, as a-vs-b-*-ratio.
PAIRS="tailgate/direct tailgate/nginx tailgate/caddy tailgate/tg-bare tailgate/floor floor/nginx tailgate-tls/nginx-tls"
REPORTED="tailgate/nginx tailgate/tg-bare tailgate/floor floor/nginx tailgate-tls/nginx-tls"

# Each round's ratios, before the medians replace the rounds' figures.
declare -A RATIO_RPS RATIO_P99 RATIO_TAIL RATIO_CPU
for pair in $PAIRS; do
	a=${pair%/*} b=${pair#*/}
	RATIO_RPS[$pair]=$(ratios "${RPS[$a]}" "${RPS[$b]}")
	RATIO_P99[$pair]=$(ratios "${P99[$a]}" "${P99[$b]}")
	RATIO_TAIL[$pair]=$(ratios "${TAIL[$a]}" "${TAIL[$b]}")
	RATIO_CPU[$pair]=$(ratios "${CPU[$a]}" "${CPU[$b]}")
done
for n in $TARGETS; do
	# shellcheck disable=SC2086 # the rounds' figures, one word each
	RPS[$n]=$(median ${RPS[$n]}) P99[$n]=$(median ${P99[$n]}) TAIL[$n]=$(median ${TAIL[$n]}) CPU[$n]=$(median ${CPU[$n]})
done

printf '\n%-12s %12s %10s %10s %12s %12s %12s\n' target "req/s" "p99 ms" "p99÷mean" "CPU µs/req" "RSS idle MB" "RSS load MB"
for n in $TARGETS; do
	printf '%-12s %12s %10s %10s %12s %12.1f %12.1f\n' "$n" "${RPS[$n]}" "${P99[$n]}" "${TAIL[$n]}" "${CPU[$n]}" \
		"$(awk -v k="${IDLE[$n]}" 'BEGIN{print k/1024}')" "$(awk -v k="${PEAK[$n]}" 'BEGIN{print k/1024}')"
done
echo
echo "tailgate is the policies route (networkAuthorization + jwtAuth + authorization); median of the rounds' ratios, each round's in brackets:"
for pair in $PAIRS; do
	# shellcheck disable=SC2086
	printf '  %-27s throughput %.2fx [%s], p99 latency %.2fx [%s], p99÷mean %.2fx [%s], CPU per request %.2fx [%s]\n' "${pair/\// ÷ }" \
		"$(median ${RATIO_RPS[$pair]})" "${RATIO_RPS[$pair]% }" "$(median ${RATIO_P99[$pair]})" "${RATIO_P99[$pair]% }" \
		"$(median ${RATIO_TAIL[$pair]})" "${RATIO_TAIL[$pair]% }" "$(median ${RATIO_CPU[$pair]})" "${RATIO_CPU[$pair]% }"
done

# The same figures as one line in Go's benchmark format, which
# go run ./bench/report reads (units are "<target>-<figure>").
line="BenchmarkGatewayWrk 1"
for n in $TARGETS; do
	line+=" ${RPS[$n]} $n-req/s ${P99[$n]} $n-p99-ms ${TAIL[$n]} $n-tail ${CPU[$n]} $n-cpu-us/req"
done
for pair in $REPORTED; do
	unit=${pair/\//-vs-}
	# shellcheck disable=SC2086
	line+=" $(median ${RATIO_RPS[$pair]}) $unit-req/s-ratio $(median ${RATIO_P99[$pair]}) $unit-p99-ratio $(median ${RATIO_TAIL[$pair]}) $unit-tail-ratio $(median ${RATIO_CPU[$pair]}) $unit-cpu-ratio"
done
echo
echo "$line"
