#!/usr/bin/env bash
# bench/gateway.sh: stampede's gateway against nginx and HAProxy as L7
# balancers, in one run, in front of the same three backends.
#
# What it measures, per target and run: requests/s, p50/p99 latency (wrk
# --latency), the balancer's CPU seconds per 10,000 requests (utime+stime
# from /proc/PID/stat) and its peak RSS (VmHWM from /proc/PID/status).
#
# Targets:
#   direct    wrk -> one backend (the ceiling; CPU column = backend nginx)
#   stampede  wrk -> stampede gateway -> 3 backends
#   nginx     wrk -> nginx (upstream, keepalive 64) -> 3 backends
#   haproxy   wrk -> HAProxy (http-reuse always) -> 3 backends
# Every balancer: one worker thread, round-robin, keep-alive both sides.
#
# Pinning on a 2-core box: wrk on one CPU, the balancer AND the backends on
# the other, so the balancer competes with the backends (as it would with
# the app on a shared box) but never with the load generator.
#
# Usage (as root on Debian; installs nginx, haproxy, wrk, curl if missing):
#   bench/gateway.sh
# Environment knobs (defaults in brackets):
#   DURATION [10]       seconds per measured wrk run
#   CONNECTIONS [64]    wrk connections (1 wrk thread always)
#   ROUNDS [3]          rounds; each round runs every target once
#   WARMUP [2]          seconds of wrk warm-up before every measured run
#   TARGETS ["direct stampede nginx haproxy"]  order within a round
#   STAMPEDE_BIN        use this binary instead of building
#                       ${CARGO_TARGET_DIR:-target}/release/stampede
#   QUIET_WAIT_MAX [600] seconds to wait for a quiet machine before a run
#   BUSY_MAX [0.25]     CPU cores others may use and still count as quiet
#   KEEP_TMP [0]        1 keeps the temp dir (configs, logs, wrk output)
#
# Load goes to 127.0.0.1 only. Every process started here is stopped on
# exit, on failure and on Ctrl-C; every wrk run is bounded by `timeout`.

set -euo pipefail
# Fixed number formats for `times`, awk and sort whatever the user's locale.
export LC_ALL=C

TARGETS=${TARGETS:-"direct stampede nginx haproxy"}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# Process tracking and cleanup, tools, pinning, ports, the backends, wrk
# runs, measure and summarize, shared with bench/gateway-edge.sh.
# shellcheck source=lib/balancer.sh
source "$SCRIPT_DIR/lib/balancer.sh"

# --------------------------------------------------------- the processes

start_stampede() {
  local d="$TMP/stampede-run"
  mkdir -p "$d"
  local args=(gateway --listen "127.0.0.1:$STAMPEDE_PORT")
  local p
  for p in "${BACKEND_PORTS[@]}"; do args+=(--backend "127.0.0.1:$p"); done
  args+=(--strategy round-robin --workers 1 --admin-listen "127.0.0.1:$STAMPEDE_ADMIN_PORT")
  # --log warn: no per-request logging, like access_log off for the others.
  STAMPEDE_CMD="stampede --log warn ${args[*]}"
  "${PIN_SRV[@]}" "$STAMPEDE" --log warn "${args[@]}" >"$d/stdout.log" 2>"$d/stderr.log" &
  STAMPEDE_PID=$!
  track "$STAMPEDE_PID"
  local i
  for ((i = 0; i < 100; i++)); do
    grep -q 'stampede gateway listening on' "$d/stdout.log" 2>/dev/null && break
    kill -0 "$STAMPEDE_PID" 2>/dev/null || break
    sleep 0.1
  done
  wait_ready stampede "$STAMPEDE_PID" "http://127.0.0.1:$STAMPEDE_PORT/" "$d/stderr.log"
}

start_nginx_lb() {
  local d="$TMP/nginx-lb"
  mkdir -p "$d/logs"
  cat >"$d/nginx.conf" <<EOF
# nginx as an L7 balancer for bench/gateway.sh: one worker, round-robin
# (nginx's default), a keep-alive pool to the backends.
$(nginx_main "$d")
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    upstream backends {
$(upstream_servers)
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
  "${PIN_SRV[@]}" nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" >"$d/logs/stdout.log" 2>&1 &
  NGINX_PID=$!
  track "$NGINX_PID"
  wait_ready "nginx balancer" "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/" "$d/logs/error.log"
  NGINX_WORKERS=$(children_of "$NGINX_PID")
  local w
  for w in $NGINX_WORKERS; do track "$w"; done
}

start_haproxy() {
  local d="$TMP/haproxy" i=0 p srv=""
  mkdir -p "$d"
  for p in "${BACKEND_PORTS[@]}"; do
    i=$((i + 1))
    srv+="    server b$i 127.0.0.1:$p
"
  done
  cat >"$d/haproxy.cfg" <<EOF
# HAProxy as an L7 balancer for bench/gateway.sh: one thread, round-robin,
# server connections reused across client connections, no logging.
global
    nbthread 1
    # Well under the usual 20000-fd limit (HAProxy needs ~2 fds per conn).
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend be

backend be
    balance roundrobin
$srv
EOF
  haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 ||
    { cat "$d/check.log" >&2; die "haproxy rejected its config"; }
  # -db: stay in the foreground as one process (no master-worker, no fork).
  "${PIN_SRV[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/stdout.log" 2>&1 &
  HAPROXY_PID=$!
  track "$HAPROXY_PID"
  wait_ready haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT/" "$d/stdout.log"
}

# ------------------------------------------------------ per-target facts

url_of() {
  case $1 in
  direct) echo "http://127.0.0.1:${BACKEND_PORTS[0]}/" ;;
  stampede) echo "http://127.0.0.1:$STAMPEDE_PORT/" ;;
  nginx) echo "http://127.0.0.1:$NGINX_PORT/" ;;
  haproxy) echo "http://127.0.0.1:$HAPROXY_PORT/" ;;
  *) die "unknown target $1" ;;
  esac
}

# The PIDs whose CPU and memory count as "the balancer". For nginx we sum
# master and worker (the master is idle, so this is the worker's cost plus
# ~0). For "direct" there is no balancer: we report the backend nginx.
pids_of() {
  case $1 in
  direct) echo "$BACKENDS_PID $(children_of "$BACKENDS_PID")" ;;
  stampede) echo "$STAMPEDE_PID" ;;
  nginx) echo "$NGINX_PID $(children_of "$NGINX_PID")" ;;
  haproxy) echo "$HAPROXY_PID" ;;
  esac
}

# Checks a target answers 200 with a backend body; for a balancer also
# that 6 requests reach all three backends (round-robin really works).
check_target() {
  local target=$1 url code body seen=" " i
  url=$(url_of "$target")
  for ((i = 0; i < 6; i++)); do
    code=$(curl -s -o "$TMP/check.body" -w '%{http_code}' --max-time 2 "$url" || true)
    [[ $code == 200 ]] || die "$target ($url) answered '${code:-nothing}' instead of 200"
    body=$(<"$TMP/check.body")
    [[ $body == "hello from "* ]] || die "$target ($url) answered 200 but not a backend body: '$body'"
    [[ $seen == *" ${body#hello from } "* ]] || seen+="${body#hello from } "
  done
  if [[ $target != direct ]] && (($(wc -w <<<"$seen") < 3)); then
    warn "$target: 6 requests reached backends {$seen} only, not all three"
  fi
  log "check $target: 200 OK, backends seen:$seen"
}

# ------------------------------------------------------------- reporting

# Renders the report (markdown) from the summary lines.
report() {
  local summary=$1
  echo "| target | req/s | p50 ms | p99 ms | CPU s /10k req | peak RSS MiB |"
  echo "| --- | ---: | ---: | ---: | ---: | ---: |"
  awk -F'\t' '{
    label = ($1 == "direct") ? "direct (1 backend; CPU/RSS = backend nginx)" : $1
    printf "| %s | %s | %.2f | %.2f | %.4f | %.1f |\n", label, $2, $3, $4, $5, $6
  }' <<<"$summary"
  echo
  echo "Medians of $ROUNDS rounds; peak RSS is the highest VmHWM seen. Balancer CPU = utime+stime from /proc; nginx rows sum master+worker."
  echo
  echo "Errors over all measured runs (wrk): $(awk -F'\t' '{printf "%s%s non-2xx %d, socket errors %d", (NR > 1 ? "; " : ""), $1, $7, $8}' <<<"$summary")."
  # shellcheck disable=SC2016 # an awk expression, expanded by awk
  noisy_warning "$summary" 10 '$1'
  echo
  awk -F'\t' '
    { rps[$1] = $2; cpu[$1] = $5 }
    END {
      if (!("stampede" in rps)) exit
      if ("nginx" in rps) {
        cr = cpu["stampede"] / cpu["nginx"]; rr = rps["stampede"] / rps["nginx"]
        printf "- stampede CPU per request / nginx: %.2fx (target <= 0.70x: %s)\n", cr, (cr <= 0.7 ? "met" : "not met")
        printf "- stampede req/s / nginx: %.2fx (target >= 1.20x: %s)\n", rr, (rr >= 1.2 ? "met" : "not met")
      }
      if ("haproxy" in rps) {
        rh = rps["stampede"] / rps["haproxy"]
        printf "- stampede req/s / HAProxy: %.2fx (target >= 1.20x: %s)\n", rh, (rh >= 1.2 ? "met" : "not met")
        printf "- (for reference) stampede CPU per request / HAProxy: %.2fx\n", cpu["stampede"] / cpu["haproxy"]
      }
    }' <<<"$summary"
}

machine_facts() {
  echo "- nproc: $(nproc)"
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "- kernel: $(uname -r)"
  echo "- $(nginx -v 2>&1)"
  echo "- $(haproxy -v 2>&1 | head -n 1)"
  echo "- wrk: $(wrk -v 2>&1 | head -n 1 | sed 's/ *Copyright.*//')"
  echo "- $STAMPEDE_VERSION ($(stat -c '%y' "$STAMPEDE_SRC" 2>/dev/null | cut -d. -f1) build)"
  echo "- stampede command: \`$STAMPEDE_CMD\`"
  echo "- pinning: $PINNING"
  echo "- wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s per run after a ${WARMUP}s warm-up, $ROUNDS rounds"
}

# ------------------------------------------------------------------- main

main() {
  [[ $ROUNDS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[1-9][0-9]*$ && $CONNECTIONS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] ||
    die "ROUNDS, DURATION, CONNECTIONS must be positive integers and WARMUP a non-negative one"
  ((WARMUP > 0)) || WARMUP=1

  ensure_tools
  TMP=$(mktemp -d /tmp/stampede-gateway-bench.XXXXXX)
  RAW="$TMP/raw.tsv"
  prepare_stampede
  choose_cpus

  BACKEND_PORTS=("$(free_port)" "$(free_port)" "$(free_port)")
  STAMPEDE_PORT=$(free_port)
  STAMPEDE_ADMIN_PORT=$(free_port)
  NGINX_PORT=$(free_port)
  HAPROXY_PORT=$(free_port)

  start_backends
  start_stampede
  start_nginx_lb
  start_haproxy
  log "backends :${BACKEND_PORTS[*]} (pid $BACKENDS_PID, worker $BACKENDS_WORKERS); stampede :$STAMPEDE_PORT (pid $STAMPEDE_PID); nginx :$NGINX_PORT (pid $NGINX_PID, worker $NGINX_WORKERS); haproxy :$HAPROXY_PORT (pid $HAPROXY_PID)"
  log "pinning: $PINNING"

  local target
  for target in $TARGETS; do check_target "$target"; done

  local round
  echo "# raw runs (round, target, req/s, p50 ms, p99 ms, CPU s/10k, RSS MiB, requests, non-2xx, socket errors, balancer CPU s, backend CPU s, wrk CPU s, other CPU s, load1, quiet)"
  for ((round = 1; round <= ROUNDS; round++)); do
    for target in $TARGETS; do
      measure "$round" "$target"
    done
  done

  # Every target must still answer after the load (a crash mid-run would
  # otherwise only show up as socket errors).
  for target in $TARGETS; do check_target "$target"; done
  curl -s --max-time 2 "http://127.0.0.1:$STAMPEDE_ADMIN_PORT/metrics" >"$TMP/stampede-metrics.txt" || true
  local statuses
  statuses=$(awk '/^stampede_gateway_requests_total/ {
      match($0, /status="[0-9]+"/); s = substr($0, RSTART + 8, RLENGTH - 9); c[s] += $NF
    } END { for (s in c) printf "%s%s=%d", (n++ ? " " : ""), s, c[s] }' "$TMP/stampede-metrics.txt")
  [[ -z $statuses ]] || log "stampede /metrics requests by status (whole run incl. warm-ups): $statuses"

  publish gateway "Gateway benchmark" \
    "DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WARMUP=$WARMUP" \
    "round, target, req/s, p50 ms, p99 ms, CPU s/10k, RSS MiB, requests, non-2xx, socket errors, balancer CPU s, backend CPU s, wrk CPU s, other CPU s, load1, quiet"
}

main "$@"
