#!/usr/bin/env bash
# bench/gateway-edge.sh: the gateway's edge work against nginx (issue 8):
# serving static files, and terminating TLS, full handshakes per second and
# keep-alive HTTPS requests per second. A script of its own beside
# bench/gateway.sh (same harness, bench/lib/balancer.sh), because the
# processes, configs and checks here are different ones.
#
# Scenarios and targets (scenario-server):
#   s1k-*     GET of a 1 KiB fingerprinted file, app.3f9a2c1b.css; keep-alive
#   s64k-*    GET of a 64 KiB text file, big.txt; keep-alive
#             stampede: a `static_dir` route; nginx: `root` with sendfile.
#             No compression on either side: stampede's config has no
#             [compression] table (the only thing that turns it on), nginx
#             has `gzip off`; the check asks for gzip/br and makes sure no
#             answer carries Content-Encoding. (HAProxy serves no files.)
#   tls-*     HTTPS with `Connection: close`: every request a new TCP
#             connection and a full TLS 1.3 handshake (wrk does not resume
#             sessions), proxied to the same three backends as
#             bench/gateway.sh. Requests/s = handshakes/s.
#   tlska-*   HTTPS keep-alive: requests/s over established TLS connections
#             (stampede serves TLS on its hyper path, not the fast path).
#   page-*    GET /page/product through a response cache with a 1 s TTL
#             (a product page under a crowd), keep-alive: stampede's
#             `response_cache`, nginx's `proxy_cache` (with
#             `proxy_cache_lock`, its files on the page cache) and
#             HAProxy's `cache`; nearly every request is a hit, and the
#             backends see about one request per second.
# TLS targets are stampede, nginx and HAProxy, all with the same
# self-signed ECDSA P-256 certificate made at run time, all proxying (not
# answering themselves), because terminating TLS in front of an app is
# what a balancer's TLS is for; each keeps a keep-alive pool to the
# backends, so the handshake is the only per-connection cost.
#
# Pinning, CPU accounting, quiet-machine waits and the report are those of
# bench/gateway.sh: wrk on one CPU, the servers (and backends) on the other;
# CPU per 10k requests from /proc/PID/stat; one worker thread/process each.
#
# Usage (as root on Debian; installs nginx, haproxy, wrk, curl if missing):
#   bench/gateway-edge.sh
# Environment knobs (defaults in brackets):
#   DURATION [10]       seconds per measured wrk run
#   CONNECTIONS [64]    wrk connections (1 wrk thread always)
#   ROUNDS [3]          rounds; each round runs every target once
#   WARMUP [2]          seconds of wrk warm-up before every measured run
#   TARGETS [all of: s1k-stampede s1k-nginx s64k-stampede s64k-nginx
#            page-stampede page-nginx page-haproxy
#            tlska-stampede tlska-nginx tlska-haproxy
#            tls-stampede tls-nginx tls-haproxy]  order within a round
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

# Keep-alive runs before the Connection: close ones, so the TIME_WAIT
# sockets the latter leave behind cannot weigh on the former in a round.
TARGETS=${TARGETS:-"s1k-stampede s1k-nginx s64k-stampede s64k-nginx page-stampede page-nginx page-haproxy tlska-stampede tlska-nginx tlska-haproxy tls-stampede tls-nginx tls-haproxy"}
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# shellcheck source=lib/balancer.sh
source "$SCRIPT_DIR/lib/balancer.sh"

# The files both servers serve, under $TMP/www/static (nginx's root is
# $TMP/www, stampede's static_dir $TMP/www/static: the same files).
SMALL_FILE=app.3f9a2c1b.css
BIG_FILE=big.txt

# ------------------------------------------------------------ preparation

# The docroot: a 1 KiB stylesheet with a fingerprinted name (cached
# "immutable" by stampede; nginx is told to send the same Cache-Control)
# and a 64 KiB text file. Text, so that a compressing server would
# compress them: the check then proves neither does.
make_files() {
  local d="$TMP/www/static"
  mkdir -p "$d"
  # Exactly SIZE bytes of lines made by awk (no `head -c`: with pipefail
  # a SIGPIPE to awk would fail the script).
  awk -v size=1024 'BEGIN {
    for (i = 0; length(s) < size; i++) s = s sprintf(".c%03d { color: #%06x; margin: 0 auto; }\n", i, i * 4099)
    printf "%s", substr(s, 1, size)
  }' >"$d/$SMALL_FILE"
  awk -v size=65536 'BEGIN {
    for (i = 0; length(s) < size; i++) s = s sprintf("line %05d of the big text file\n", i)
    printf "%s", substr(s, 1, size)
  }' >"$d/$BIG_FILE"
  # nginx's worker runs as an unprivileged user (as root starts it) and
  # must reach the files: the temp dir made by mktemp is 0700.
  chmod 711 "$TMP"
  chmod -R a+rX "$TMP/www"
  [[ $(stat -c %s "$d/$SMALL_FILE") == 1024 && $(stat -c %s "$d/$BIG_FILE") == 65536 ]] ||
    die "could not make the 1 KiB and 64 KiB files in $d"
}

# A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, made
# fresh each run (nothing secret to keep), shared by all three servers.
make_cert() {
  local d="$TMP/tls"
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$d/key.pem" -out "$d/cert.pem" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$d/openssl.log" 2>&1 ||
    { cat "$d/openssl.log" >&2; die "openssl could not make the certificate"; }
  # HAProxy wants certificate and key in one file.
  cat "$d/cert.pem" "$d/key.pem" >"$d/combined.pem"
  CERT="$d/cert.pem" KEY="$d/key.pem" COMBINED="$d/combined.pem"
}

# --------------------------------------------------------- the processes

# One stampede gateway, one worker thread: the static route and the
# proxied rest on the plain listener, the same routes on the TLS one.
# No [compression] table: nothing is compressed on the fly.
start_stampede_edge() {
  local d="$TMP/stampede-run" p backends=""
  mkdir -p "$d"
  for p in "${BACKEND_PORTS[@]}"; do backends+="\"127.0.0.1:$p\", "; done
  cat >"$d/gateway.toml" <<EOF
# stampede for bench/gateway-edge.sh. No [compression]: none on the fly.
listen = "127.0.0.1:$STAMPEDE_PORT"
admin_listen = "127.0.0.1:$STAMPEDE_ADMIN_PORT"
workers = 1

[tls]
listen = "127.0.0.1:$STAMPEDE_TLS_PORT"
certificates = [{ cert = "$CERT", key = "$KEY" }]

[pools.backends]
strategy = "round-robin"
backends = [${backends%, }]

[[routes]]
path_prefix = "/static"
static_dir = "$TMP/www/static"

[[routes]]
path_prefix = "/page"
pool = "backends"
response_cache = { ttl = "1s" }

[[routes]]
path_prefix = "/"
pool = "backends"
EOF
  "$STAMPEDE" gateway --check --config "$d/gateway.toml" >"$d/check.log" 2>&1 ||
    { cat "$d/check.log" >&2; die "stampede rejected its config ($d/gateway.toml)"; }
  # --log warn: no per-request logging, like access_log off for the others.
  STAMPEDE_CMD="stampede --log warn gateway --config gateway.toml"
  "${PIN_SRV[@]}" "$STAMPEDE" --log warn gateway --config "$d/gateway.toml" \
    >"$d/stdout.log" 2>"$d/stderr.log" &
  STAMPEDE_PID=$!
  track "$STAMPEDE_PID"
  wait_ready stampede "$STAMPEDE_PID" "http://127.0.0.1:$STAMPEDE_PORT/static/$SMALL_FILE" "$d/stderr.log"
}

# One nginx, one worker: files from `root` with sendfile (and tcp_nopush,
# as Debian's stock nginx.conf has it), etag, no gzip; the rest proxied
# to the backends with a keep-alive pool, on plain HTTP and on TLS 1.3.
# Session cache and tickets stay at nginx's defaults, as for stampede.
start_nginx_edge() {
  local d="$TMP/nginx-edge"
  mkdir -p "$d/logs"
  cat >"$d/nginx.conf" <<EOF
# nginx for bench/gateway-edge.sh: one worker.
$(nginx_main "$d")
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    sendfile on;
    tcp_nopush on;
    etag on;
    gzip off;
    types { text/css css; text/plain txt; }
    default_type application/octet-stream;
    ssl_protocols TLSv1.3;
    proxy_cache_path $d/cache levels=1:2 keys_zone=pages:10m max_size=64m inactive=10s;
    upstream backends {
$(upstream_servers)
        keepalive 64;
        keepalive_requests 1000000;
        keepalive_timeout 300s;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        listen 127.0.0.1:$NGINX_TLS_PORT ssl backlog=4096;
        ssl_certificate $CERT;
        ssl_certificate_key $KEY;
        root $TMP/www;
        # The Cache-Control stampede sends, so both answers carry the
        # same headers (ETag and Last-Modified are nginx's defaults).
        location /static/ {
            add_header Cache-Control "public, max-age=600";
            location ~ "\\.[0-9a-f]{8,}\\.[a-z]+\$" {
                add_header Cache-Control "public, max-age=31536000, immutable";
            }
        }
        location / {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
        location /page/ {
            proxy_pass http://backends;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache pages;
            proxy_cache_valid 200 1s;
            proxy_cache_lock on;
            add_header X-Cache-Status \$upstream_cache_status;
        }
    }
}
EOF
  nginx -t -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" >"$d/check.log" 2>&1 ||
    { cat "$d/check.log" >&2; die "nginx rejected its config ($d/nginx.conf)"; }
  "${PIN_SRV[@]}" nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" >"$d/logs/stdout.log" 2>&1 &
  NGINX_PID=$!
  track "$NGINX_PID"
  wait_ready nginx "$NGINX_PID" "http://127.0.0.1:$NGINX_PORT/static/$SMALL_FILE" "$d/logs/error.log"
  local w
  for w in $(children_of "$NGINX_PID"); do track "$w"; done
}

# HAProxy terminating TLS 1.3 (one thread, http-reuse always, as in
# bench/gateway.sh). The plain bind is only there for the readiness check.
start_haproxy_tls() {
  local d="$TMP/haproxy" i=0 p srv=""
  mkdir -p "$d"
  for p in "${BACKEND_PORTS[@]}"; do
    i=$((i + 1))
    srv+="    server b$i 127.0.0.1:$p
"
  done
  cat >"$d/haproxy.cfg" <<EOF
# HAProxy for bench/gateway-edge.sh: TLS termination, one thread.
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 300s

cache pages
    total-max-size 16
    max-age 1

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    bind 127.0.0.1:$HAPROXY_TLS_PORT ssl crt $COMBINED ssl-min-ver TLSv1.3
    default_backend be

backend be
    balance roundrobin
    # HAProxy's cache keeps only answers that say how long they are fresh;
    # the backends say nothing, so /page/ answers are given the TTL the
    # other two are configured with. Nothing else is cached.
    http-request set-var(txn.page) bool(true) if { path_beg /page/ }
    http-request cache-use pages if { var(txn.page) -m bool }
    http-response set-header Cache-Control "public, max-age=1" if { var(txn.page) -m bool }
    http-response cache-store pages if { var(txn.page) -m bool }
$srv
EOF
  haproxy -c -q -f "$d/haproxy.cfg" >"$d/check.log" 2>&1 ||
    { cat "$d/check.log" >&2; die "haproxy rejected its config"; }
  "${PIN_SRV[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/stdout.log" 2>&1 &
  HAPROXY_PID=$!
  track "$HAPROXY_PID"
  wait_ready haproxy "$HAPROXY_PID" "http://127.0.0.1:$HAPROXY_PORT/" "$d/stdout.log"
}

# ------------------------------------------------------ per-target facts

url_of() {
  local scenario=${1%%-*} server=${1#*-} plain tls
  case $server in
  stampede) plain=$STAMPEDE_PORT tls=$STAMPEDE_TLS_PORT ;;
  nginx) plain=$NGINX_PORT tls=$NGINX_TLS_PORT ;;
  haproxy) plain=$HAPROXY_PORT tls=$HAPROXY_TLS_PORT ;;
  *) die "unknown server in target $1" ;;
  esac
  case $scenario in
  s1k) echo "http://127.0.0.1:$plain/static/$SMALL_FILE" ;;
  s64k) echo "http://127.0.0.1:$plain/static/$BIG_FILE" ;;
  page) echo "http://127.0.0.1:$plain/page/product" ;;
  tls | tlska) echo "https://127.0.0.1:$tls/" ;;
  *) die "unknown scenario in target $1" ;;
  esac
}

# nginx's children but its cache loader, which exits a minute after the
# start (the cache manager, which stays, is counted).
lasting_children_of() {
  local child
  for child in $(children_of "$1"); do
    tr '\0' ' ' <"/proc/$child/cmdline" 2>/dev/null | grep -q 'cache loader' || echo "$child"
  done
}

# The PIDs whose CPU counts: the server's (nginx: master, worker and cache
# manager).
pids_of() {
  case ${1#*-} in
  stampede) echo "$STAMPEDE_PID" ;;
  nginx) echo "$NGINX_PID $(lasting_children_of "$NGINX_PID")" ;;
  haproxy) echo "$HAPROXY_PID" ;;
  esac
}

# wrk's extra arguments for a target: a new connection per request for
# the handshake scenario.
wrk_args_of() {
  case ${1%%-*} in
  tls) printf '%s\n' -H "Connection: close" ;;
  esac
}

# Checks what a target answers before (and after) the runs: static files
# byte for byte and uncompressed although the client accepts gzip and br;
# HTTPS answers from a backend, over TLS 1.3 (protocol, cipher and key
# exchange logged, as wrk's OpenSSL negotiates the same).
check_target() {
  local target=$1 url code hdrs
  url=$(url_of "$target")
  hdrs="$TMP/check.headers"
  code=$(curl -sk -o "$TMP/check.body" -D "$hdrs" -w '%{http_code}' --max-time 2 \
    -H 'Accept-Encoding: gzip, br' "$url" || true)
  [[ $code == 200 ]] || die "$target ($url) answered '${code:-nothing}' instead of 200"
  case ${target%%-*} in
  s1k | s64k)
    local file=$SMALL_FILE
    [[ ${target%%-*} == s64k ]] && file=$BIG_FILE
    cmp -s "$TMP/check.body" "$TMP/www/static/$file" || die "$target: body differs from $file"
    ! grep -qi '^content-encoding:' "$hdrs" || die "$target compressed $file: $(grep -i '^content-encoding:' "$hdrs")"
    log "check $target: 200, $(stat -c %s "$TMP/check.body") bytes identical to $file, no Content-Encoding; $(grep -i '^cache-control:' "$hdrs" | tr -d '\r')"
    ;;
  page)
    grep -q '^hello from ' "$TMP/check.body" || die "$target answered 200 but not a backend body"
    # Asked again at once, the page must come from the cache: stampede
    # and nginx say so in X-Cache-Status, HAProxy by an Age on its hits.
    curl -s -o /dev/null -D "$hdrs" --max-time 2 "$url" || true
    grep -qiE '^(x-cache-status: HIT|age: )' "$hdrs" || die "$target: a second request was not a cache hit"
    log "check $target: 200 from a backend, then from the cache"
    ;;
  *)
    grep -q '^hello from ' "$TMP/check.body" || die "$target answered 200 but not a backend body"
    local port=${url#https://127.0.0.1:} tlsinfo
    port=${port%/}
    tlsinfo=$(timeout 5 openssl s_client -connect "127.0.0.1:$port" -servername localhost -brief </dev/null 2>&1 |
      awk -F': ' '/^(Protocol version|Ciphersuite|Peer Temp Key|Server Temp Key)/ {printf "%s%s", (n++ ? ", " : ""), $2}')
    [[ $tlsinfo == TLSv1.3* ]] || die "$target did not negotiate TLS 1.3 ($tlsinfo)"
    log "check $target: 200 from a backend; TLS: $tlsinfo"
    TLS_INFO[${target#*-}]=$tlsinfo
    ;;
  esac
}

# ------------------------------------------------------------- reporting

# Renders the report (markdown) from the summary lines: one table, rows
# grouped by scenario, and stampede's ratios to nginx per scenario.
report() {
  local summary=$1
  echo "| scenario | server | req/s | p50 ms | p99 ms | CPU s /10k req |"
  echo "| --- | --- | ---: | ---: | ---: | ---: |"
  awk -F'\t' '
    BEGIN {
      name["s1k"] = "static 1 KiB (keep-alive)"; name["s64k"] = "static 64 KiB (keep-alive)"
      name["tlska"] = "HTTPS keep-alive, proxied"; name["tls"] = "TLS handshake per request, proxied"
      name["page"] = "page through a 1 s response cache (keep-alive)"
    }
    {
      sc = $1; sub(/-.*/, "", sc); sv = $1; sub(/^[^-]*-/, "", sv)
      printf "| %s | %s | %s | %.2f | %.2f | %.4f |\n", name[sc], sv, $2, $3, $4, $5
    }' <<<"$summary"
  echo
  echo "Medians of $ROUNDS rounds. CPU = utime+stime from /proc of the server process (nginx: master+worker). p50/p99 are wrk's, from writing a request to its answer: with Connection: close they do not include the connect and handshake."
  echo
  echo "Errors over all measured runs (wrk): $(awk -F'\t' '{printf "%s%s non-2xx %d, socket errors %d", (NR > 1 ? "; " : ""), $1, $7, $8}' <<<"$summary")."
  # shellcheck disable=SC2016 # an awk expression, expanded by awk
  noisy_warning "$summary" 10 '$1'
  echo
  awk -F'\t' '
    { rps[$1] = $2; cpu[$1] = $5 }
    END {
      n = split("s1k s64k page tlska tls", sc, " ")
      for (i = 1; i <= n; i++) {
        s = sc[i] "-stampede"; g = sc[i] "-nginx"; h = sc[i] "-haproxy"
        if (!(s in rps) || !(g in rps)) continue
        printf "- %s: stampede req/s / nginx %.2fx, CPU per request / nginx %.2fx", sc[i], rps[s] / rps[g], cpu[s] / cpu[g]
        if (h in rps) printf "; / HAProxy: req/s %.2fx, CPU %.2fx", rps[s] / rps[h], cpu[s] / cpu[h]
        printf "\n"
      }
    }' <<<"$summary"
  # wrk's own CPU share: near 1.0 core means the load generator, not the
  # server, set the pace of that run.
  echo
  echo "wrk CPU (cores busy, median per target): $(awk -F'\t' -v d="$DURATION" '
    { n[$2]++; v[$2, n[$2]] = $13 / d; if (!($2 in seen)) { seen[$2] = 1; order[++k] = $2 } }
    END {
      for (i = 1; i <= k; i++) {
        t = order[i]; m = n[t]
        for (a = 1; a <= m; a++) x[a] = v[t, a]
        for (a = 2; a <= m; a++) { y = x[a]; for (b = a - 1; b >= 1 && x[b] > y; b--) x[b + 1] = x[b]; x[b + 1] = y }
        med = (m % 2) ? x[(m + 1) / 2] : (x[m / 2] + x[m / 2 + 1]) / 2
        printf "%s%s %.2f", (i > 1 ? ", " : ""), t, med
      }
    }' "$RAW")."
}

machine_facts() {
  echo "- nproc: $(nproc)"
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "- kernel: $(uname -r)"
  echo "- $(nginx -v 2>&1)"
  echo "- $(haproxy -v 2>&1 | head -n 1)"
  echo "- $(openssl version)"
  echo "- wrk: $(wrk -v 2>&1 | head -n 1 | sed 's/ *Copyright.*//')"
  echo "- $STAMPEDE_VERSION ($(stat -c '%y' "$STAMPEDE_SRC" 2>/dev/null | cut -d. -f1) build), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "- stampede command: \`$STAMPEDE_CMD\` (workers = 1, no [compression])"
  local server
  for server in stampede nginx haproxy; do
    [[ -z ${TLS_INFO[$server]:-} ]] || echo "- TLS negotiated with $server: ${TLS_INFO[$server]}"
  done
  echo "- pinning: $PINNING"
  echo "- wrk: 1 thread, $CONNECTIONS connections, ${DURATION}s per run after a ${WARMUP}s warm-up, $ROUNDS rounds"
}

# ------------------------------------------------------------------- main

declare -A TLS_INFO=()

main() {
  [[ $ROUNDS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[1-9][0-9]*$ && $CONNECTIONS =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] ||
    die "ROUNDS, DURATION, CONNECTIONS must be positive integers and WARMUP a non-negative one"
  ((WARMUP > 0)) || WARMUP=1
  command -v openssl >/dev/null 2>&1 || die "openssl is needed for the certificate"

  ensure_tools
  TMP=$(mktemp -d /tmp/stampede-gateway-edge-bench.XXXXXX)
  RAW="$TMP/raw.tsv"
  prepare_stampede
  choose_cpus
  make_files
  make_cert

  BACKEND_PORTS=("$(free_port)" "$(free_port)" "$(free_port)")
  STAMPEDE_PORT=$(free_port)
  STAMPEDE_TLS_PORT=$(free_port)
  STAMPEDE_ADMIN_PORT=$(free_port)
  NGINX_PORT=$(free_port)
  NGINX_TLS_PORT=$(free_port)
  HAPROXY_PORT=$(free_port)
  HAPROXY_TLS_PORT=$(free_port)

  start_backends
  start_stampede_edge
  start_nginx_edge
  # HAProxy only when a target needs it (it serves no files).
  [[ " $TARGETS " != *"-haproxy "* ]] || start_haproxy_tls
  log "backends :${BACKEND_PORTS[*]}; stampede :$STAMPEDE_PORT tls :$STAMPEDE_TLS_PORT (pid $STAMPEDE_PID); nginx :$NGINX_PORT tls :$NGINX_TLS_PORT (pid $NGINX_PID); haproxy tls :$HAPROXY_TLS_PORT (pid ${HAPROXY_PID:-not started})"
  log "pinning: $PINNING"

  local target
  for target in $TARGETS; do check_target "$target"; done

  local round args
  echo "# raw runs (round, target, req/s, p50 ms, p99 ms, CPU s/10k, RSS MiB, requests, non-2xx, socket errors, server CPU s, backend CPU s, wrk CPU s, other CPU s, load1, quiet)"
  for ((round = 1; round <= ROUNDS; round++)); do
    for target in $TARGETS; do
      mapfile -t args < <(wrk_args_of "$target")
      measure "$round" "$target" "${args[@]}"
    done
  done

  # Every target must still answer after the load.
  for target in $TARGETS; do check_target "$target"; done
  curl -s --max-time 2 "http://127.0.0.1:$STAMPEDE_ADMIN_PORT/metrics" >"$TMP/stampede-metrics.txt" || true
  local handshakes
  handshakes=$(awk '/^stampede_gateway_tls_handshakes_total/ {printf "%s%s", (n++ ? " " : ""), $0}' "$TMP/stampede-metrics.txt")
  [[ -z $handshakes ]] || log "stampede /metrics TLS handshakes (whole run incl. warm-ups): $handshakes"

  publish gateway-edge "Gateway edge benchmark: static files, a response cache and TLS" \
    "DURATION=$DURATION CONNECTIONS=$CONNECTIONS ROUNDS=$ROUNDS WARMUP=$WARMUP" \
    "round, target, req/s, p50 ms, p99 ms, CPU s/10k, RSS MiB, requests, non-2xx, socket errors, server CPU s, backend CPU s, wrk CPU s, other CPU s, load1, quiet"
}

main "$@"
