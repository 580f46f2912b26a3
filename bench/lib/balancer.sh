# shellcheck shell=bash
# Globals assigned here (PINNING, STAMPEDE_VERSION, ...) are read by the
# scripts that source this file.
# shellcheck disable=SC2034
# bench/lib/balancer.sh: what the scripts that load a balancer with wrk
# share (bench/gateway.sh, bench/gateway-edge.sh): tracking and stopping
# the processes they start, tools and the stampede binary, CPU pinning,
# free ports, the backends, per-process CPU and memory, wrk runs, one
# measured run and the medians.
# Sourced after the script has set SCRIPT_DIR and TARGETS; the script
# defines url_of TARGET and pids_of TARGET (the URL wrk loads and the PIDs
# whose CPU counts). The knobs every such script takes get their defaults
# here, and the traps that stop what was started are installed here.

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-2}
QUIET_WAIT_MAX=${QUIET_WAIT_MAX:-600}
BUSY_MAX=${BUSY_MAX:-0.25}
KEEP_TMP=${KEEP_TMP:-0}

ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT_DIR="$SCRIPT_DIR/out"
CLK_TCK=$(getconf CLK_TCK)

TMP=""
# "pid starttime" pairs of everything we started. cleanup kills a PID only
# if its start time (field 22 of /proc/PID/stat, fixed at fork, unchanged
# by taskset's exec) still matches, so a recycled PID is never hit.
STARTED=()
CURRENT_WRK_PID=""

log() { printf '[%s %(%H:%M:%S)T] %s\n' "${0##*/}" -1 "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
  log "ERROR: $*"
  exit 1
}

# ---------------------------------------------------------------- cleanup

# Start time of a process (clock ticks after boot), or nothing if gone.
start_time() {
  local stat rest f
  { stat=$(<"/proc/$1/stat"); } 2>/dev/null || return 0
  rest=${stat##*) }
  read -ra f <<<"$rest"
  # f[0] is field 3 (state); a zombie is as good as gone.
  [[ ${f[0]} == Z ]] || echo "${f[19]}"
}

# True while the tracked process "pid starttime" is still running.
alive() { [[ $(start_time "${1%% *}") == "${1#* }" ]]; }

# Stops every process we started: TERM first (nginx masters take their
# workers with them, stampede drains), KILL after 5 s for stragglers.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $CURRENT_WRK_PID ]]; then
    kill -TERM "$CURRENT_WRK_PID" 2>/dev/null
  fi
  local entry left=()
  for entry in "${STARTED[@]}"; do
    if alive "$entry"; then
      kill -TERM "${entry%% *}" 2>/dev/null && left+=("$entry")
    fi
  done
  local i still
  for ((i = 0; i < 50 && ${#left[@]} > 0; i++)); do
    sleep 0.1
    still=()
    for entry in "${left[@]}"; do
      alive "$entry" && still+=("$entry")
    done
    left=("${still[@]}")
  done
  for entry in "${left[@]}"; do
    warn "pid ${entry%% *} did not stop on SIGTERM within 5 s: SIGKILL"
    kill -KILL "${entry%% *}" 2>/dev/null
  done
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ $KEEP_TMP == 1 || $rc != 0 ]]; then
      log "kept temp dir (configs, logs, wrk output): $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}

# Remember a started process by PID and start time (for cleanup).
track() {
  local st
  st=$(start_time "$1")
  [[ -n $st ]] && STARTED+=("$1 $st")
  return 0
}

# ------------------------------------------------------------ preparation

# Installs only what is missing; `apt-get update` only when installing,
# because on a machine that has everything it is slow and pointless.
ensure_tools() {
  local missing=() tool pkg
  for tool in nginx:nginx haproxy:haproxy wrk:wrk curl:curl taskset:util-linux getconf:libc-bin timeout:coreutils; do
    pkg=${tool#*:}
    command -v "${tool%%:*}" >/dev/null 2>&1 || missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  [[ $(id -u) == 0 ]] || die "missing ${missing[*]} and not root to apt-get install them"
  log "installing ${missing[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
  for tool in nginx haproxy wrk curl; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool still missing after apt-get install"
  done
}

# The release binary, rebuilt when any Rust source or manifest is newer.
# We run a private copy so a concurrent `cargo build` by someone else cannot
# swap the binary under a running benchmark.
prepare_stampede() {
  local bin
  if [[ -n ${STAMPEDE_BIN:-} ]]; then
    bin=$STAMPEDE_BIN
    [[ -x $bin ]] || die "STAMPEDE_BIN=$bin is not an executable"
    log "using STAMPEDE_BIN=$bin (no build)"
  else
    # Where cargo puts it: CARGO_TARGET_DIR when set, as cargo does.
    bin="${CARGO_TARGET_DIR:-$ROOT/target}/release/stampede"

    if [[ ! -x $bin ]] ||
      [[ -n $(find "$ROOT/crates" "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" -newer "$bin" \
        \( -name '*.rs' -o -name 'Cargo.toml' -o -name 'Cargo.lock' \) -print -quit 2>/dev/null) ]]; then
      command -v cargo >/dev/null 2>&1 || die "$bin is missing or stale and cargo is not installed"
      log "building stampede (cargo build --release -p stampede)"
      (cd "$ROOT" && cargo build --release -p stampede) >&2 ||
        die "cargo build failed; fix the build or set STAMPEDE_BIN"
    else
      log "$bin is up to date"
    fi
  fi
  # The file the binary came from, for the report (its build time).
  STAMPEDE_SRC=$bin
  cp "$bin" "$TMP/stampede"
  STAMPEDE="$TMP/stampede"
  STAMPEDE_VERSION=$("$STAMPEDE" --version 2>/dev/null || echo "stampede (version unknown)")
}

# Two CPUs from the ones we may use: wrk gets the first, everything else
# the second. With one CPU we cannot separate them, so we do not pin.
choose_cpus() {
  local list cpus=() parts=() part a b c
  list=$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)
  IFS=, read -ra parts <<<"$list"
  for part in "${parts[@]}"; do
    if [[ $part == *-* ]]; then
      a=${part%-*} b=${part#*-}
      for ((c = a; c <= b; c++)); do cpus+=("$c"); done
    else
      cpus+=("$part")
    fi
  done
  if ((${#cpus[@]} >= 2)); then
    LG_CPU=${cpus[0]} SRV_CPU=${cpus[1]}
    PIN_LG=(taskset -c "$LG_CPU")
    PIN_SRV=(taskset -c "$SRV_CPU")
    PINNING="wrk on CPU $LG_CPU; balancer and backends on CPU $SRV_CPU"
  else
    warn "only one CPU available (${list}); running WITHOUT pinning: wrk, balancer and backends share it"
    PIN_LG=() PIN_SRV=()
    PINNING="none (one CPU)"
  fi
}

# A free port on 127.0.0.1. We pick below the kernel's ephemeral range, so
# no outgoing connection (wrk's, a balancer's) can grab it between our pick
# and the bind, and skip every port any TCP socket uses in any state: a
# TIME_WAIT left by an earlier run also makes bind() fail (EADDRINUSE).
USED_PORTS=" "
free_port() {
  local low lo hi port i taken
  read -r low _ </proc/sys/net/ipv4/ip_local_port_range
  if ((low > 12000)); then
    lo=10000 hi=$((low - 1))
  else
    lo=20000 hi=59999
  fi
  # Local ports of all TCP sockets, from the hex "ADDR:PORT" column.
  # (Plain hex decoding: Debian's default awk, mawk, has no strtonum.)
  taken=" $(awk 'FNR > 1 {
      split($2, a, ":"); h = toupper(a[2]); n = 0
      for (i = 1; i <= length(h); i++) n = n * 16 + index("0123456789ABCDEF", substr(h, i, 1)) - 1
      printf "%d ", n
    }' /proc/net/tcp /proc/net/tcp6 2>/dev/null || true) "
  for ((i = 0; i < 500; i++)); do
    port=$((lo + RANDOM % (hi - lo + 1)))
    [[ $USED_PORTS == *" $port "* || $taken == *" $port "* ]] && continue
    USED_PORTS+="$port "
    echo "$port"
    return 0
  done
  die "no free port found on 127.0.0.1"
}

# Polls until URL answers 200 or the process dies (then shows its log).
wait_ready() {
  local name=$1 pid=$2 url=$3 logfile=$4 i code
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "$name (pid $pid) exited during start-up; log above ($logfile)"
    fi
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$url" || true)
    [[ $code == 200 ]] && return 0
    sleep 0.1
  done
  tail -n 20 "$logfile" >&2 || true
  die "$name did not answer 200 on $url within 10 s (last status: ${code:-none})"
}

# The nginx worker(s) of a master: the processes that do the work.
children_of() { pgrep -P "$1" | tr '\n' ' '; }

# --------------------------------------------------------- the processes

# The main context of every nginx.conf here: one worker in the foreground,
# its pid and error log in DIR.
nginx_main() {
  printf '%s\n' "worker_processes 1;" "daemon off;" "master_process on;" \
    "pid $1/nginx.pid;" "error_log $1/logs/error.log warn;" \
    "events { worker_connections 8192; }"
}

# The backends as nginx upstream `server` lines.
upstream_servers() {
  local p
  for p in "${BACKEND_PORTS[@]}"; do printf '        server 127.0.0.1:%s;\n' "$p"; done
}

# One nginx process (1 worker) serving the three backends, pinned with the
# balancers so backend work competes for the same core, as in production.
start_backends() {
  local d="$TMP/backends" i servers=""
  mkdir -p "$d/logs"
  for i in 1 2 3; do
    servers+="    server {
        listen 127.0.0.1:${BACKEND_PORTS[i - 1]} backlog=4096;
        location / { return 200 \"hello from $i\\n\"; }
    }
"
  done
  cat >"$d/nginx.conf" <<EOF
# Backends for bench/gateway.sh: one worker serving three ports.
$(nginx_main "$d")
http {
    access_log off;
    default_type text/plain;
    # High so no client (wrk or a balancer's pool) is ever made to reconnect.
    keepalive_requests 1000000;
    keepalive_timeout 300s;
$servers}
EOF
  "${PIN_SRV[@]}" nginx -p "$d" -e "$d/logs/error.log" -c "$d/nginx.conf" >"$d/logs/stdout.log" 2>&1 &
  BACKENDS_PID=$!
  track "$BACKENDS_PID"
  for i in 0 1 2; do
    wait_ready "backend nginx" "$BACKENDS_PID" "http://127.0.0.1:${BACKEND_PORTS[i]}/" "$d/logs/error.log"
  done
  BACKENDS_WORKERS=$(children_of "$BACKENDS_PID")
  local w
  for w in $BACKENDS_WORKERS; do track "$w"; done
}

# ---------------------------------------------- CPU and memory per process

# utime+stime in clock ticks, summed over PIDs. /proc/PID/stat of a thread
# group leader already sums all its threads. The comm field may contain
# spaces, so we cut everything up to the last ") " first.
cpu_ticks() {
  local pid total=0 stat rest f
  for pid in "$@"; do
    stat=$(<"/proc/$pid/stat") || die "process $pid is gone"
    rest=${stat##*) }
    read -ra f <<<"$rest"
    # f[0] is field 3 (state): utime is field 14, stime field 15.
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

# Peak RSS (VmHWM) in KiB, summed over PIDs.
hwm_kib() {
  local pid total=0 v
  for pid in "$@"; do
    v=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status") || die "process $pid is gone"
    total=$((total + v))
  done
  echo "$total"
}

# CPU ticks of reaped children of this shell (user+sys), from the `times`
# builtin; used to learn what wrk itself spent, since it is gone before we
# could read its /proc. `times` must run in this shell, not in a $(...)
# subshell (which would report the subshell's own children), so it writes
# to a file and awk reads that.
children_ticks() {
  times >"$TMP/times.txt"
  awk -v tck="$CLK_TCK" 'END {
    s = 0
    for (i = 1; i <= NF; i++) {
      v = $i; sub(/s$/, "", v); split(v, ms, "m"); s += ms[1] * 60 + ms[2]
    }
    printf "%d\n", s * tck + 0.5
  }' "$TMP/times.txt"
}

# ---------------------------------------------------------- quiet machine

# shellcheck source=lib/quiet.sh
source "$SCRIPT_DIR/lib/quiet.sh"
# shellcheck source=lib/publish.sh
source "$SCRIPT_DIR/lib/publish.sh"

# ------------------------------------------------------------- measuring

# run_wrk URL SECONDS OUT [WRK ARGS...]: wrk pinned on the load CPU; in
# the background + wait so that a Ctrl-C reaches our trap at once.
# `timeout` bounds it whatever happens.
run_wrk() {
  local url=$1 secs=$2 out=$3 rc=0
  shift 3
  "${PIN_LG[@]}" timeout --kill-after=5 $((secs + 30)) \
    wrk -t1 -c"$CONNECTIONS" -d"${secs}s" --latency "$@" "$url" >"$out" 2>&1 &
  CURRENT_WRK_PID=$!
  wait "$CURRENT_WRK_PID" || rc=$?
  CURRENT_WRK_PID=""
  if ((rc != 0)); then
    cat "$out" >&2
    die "wrk failed (exit $rc) against $url"
  fi
}

# Parses wrk output into: rps p50_ms p99_ms requests non2xx socket_errors.
# wrk prints latencies as us, ms, s or m; we convert to ms.
parse_wrk() {
  awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /m$/)  { sub(/m$/, "", v);  return v * 60000 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return -1
    }
    /^ +50%/ { p50 = ms($2) }
    /^ +99%/ { p99 = ms($2) }
    / requests in / { req = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Non-2xx or 3xx responses:/ { non2xx = $NF }
    /Socket errors:/ {
      # "Socket errors: connect 0, read 0, write 0, timeout 0"
      line = $0; gsub(/,/, "", line); n = split(line, f, " ")
      for (i = 1; i <= n; i++) if (f[i] ~ /^[0-9]+$/) sock += f[i]
    }
    END {
      if (rps == "" || req == "" || p50 == "" || p99 == "") exit 1
      printf "%s %.3f %.3f %d %d %d\n", rps, p50, p99, req, non2xx + 0, sock + 0
    }' "$1"
}

# measure ROUND TARGET [WRK ARGS...]: one measured run of one target:
# quiet check, warm-up, CPU/RSS snapshot, wrk, snapshot again; appends a
# raw line to $RAW. WRK ARGS (e.g. -H "Connection: close") go to both
# the warm-up and the measured wrk.
measure() {
  local round=$1 target=$2 url pids bpids out
  shift 2
  url=$(url_of "$target")
  wait_quiet
  run_wrk "$url" "$WARMUP" "$TMP/wrk-warmup-$target-$round.txt" "$@"
  pids=$(pids_of "$target")
  bpids="$BACKENDS_PID $(children_of "$BACKENDS_PID")"
  out="$TMP/wrk-$target-$round.txt"

  # shellcheck disable=SC2086 # word splitting of PID lists is intended
  {
    local t0 b0 s0 c0 t1 b1 s1 c1
    children_ticks >"$TMP/c0"
    t0=$(cpu_ticks $pids)
    b0=$(cpu_ticks $bpids)
    s0=$(system_busy_ticks)
    run_wrk "$url" "$DURATION" "$out" "$@"
    s1=$(system_busy_ticks)
    children_ticks >"$TMP/c1"
    c0=$(<"$TMP/c0")
    c1=$(<"$TMP/c1")
    t1=$(cpu_ticks $pids)
    b1=$(cpu_ticks $bpids)
    local hwm
    hwm=$(hwm_kib $pids)
  }

  local parsed rps p50 p99 req non2xx sock
  parsed=$(parse_wrk "$out") || {
    cat "$out" >&2
    die "could not parse wrk output for $target"
  }
  read -r rps p50 p99 req non2xx sock <<<"$parsed"
  ((req > 0)) || die "$target: wrk reports 0 requests"

  # CPU s per 10k requests = ticks / CLK_TCK / requests * 10000.
  # "other" = whole-machine busy time minus wrk, balancer and backends:
  # what someone else (or kernel threads, e.g. ksoftirqd) used meanwhile.
  local line
  line=$(awk -v r="$round" -v tg="$target" -v rps="$rps" -v p50="$p50" -v p99="$p99" \
    -v req="$req" -v n2="$non2xx" -v se="$sock" -v tck="$CLK_TCK" \
    -v t="$((t1 - t0))" -v b="$((b1 - b0))" -v c="$((c1 - c0))" -v s="$((s1 - s0))" \
    -v hwm="$hwm" -v q="$QUIET" -v l1="$LOAD1" 'BEGIN {
      bal = t / tck; be = b / tck; wrk = c / tck; sys = s / tck
      other = sys - wrk - be - (tg == "direct" ? 0 : bal)
      if (other < 0) other = 0
      printf "%d\t%s\t%.0f\t%.3f\t%.3f\t%.4f\t%.1f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%s\t%s\n",
        r, tg, rps, p50, p99, bal / req * 10000, hwm / 1024, req, n2, se,
        bal, (tg == "direct" ? 0 : be), wrk, other, l1, q
    }')
  printf '%s\n' "$line" >>"$RAW"
  printf '%s\n' "$line" | awk -F'\t' '{
    printf "run: round %s %-8s %8s req/s  p50 %7.3f ms  p99 %7.3f ms  cpu %.4f s/10k  rss %s MiB  reqs %s  non2xx %s  sockerr %s  bal %ss be %ss wrk %ss other %ss  load1 %s quiet %s\n",
      $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16
  }'
}

# ------------------------------------------------------------- reporting

# Median per target of req/s, p50, p99, CPU/10k; max of peak RSS (VmHWM
# only grows, so the last run's value is the process's peak). Also the
# totals of non-2xx and socket errors.
summarize() {
  local target
  for target in $TARGETS; do
    awk -F'\t' -v tg="$target" '
      function median(a, n,   i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      $2 == tg {
        n++; rps[n] = $3; p50[n] = $4; p99[n] = $5; cpu[n] = $6
        if ($7 > rss) rss = $7
        n2 += $9; se += $10; if ($16 != "yes") noisy++
      }
      END {
        if (n == 0) exit
        printf "%s\t%.0f\t%.3f\t%.3f\t%.4f\t%.1f\t%d\t%d\t%d\t%d\n",
          tg, median(rps, n), median(p50, n), median(p99, n), median(cpu, n), rss, n2, se, n, noisy + 0
      }' "$RAW"
  done
}

# Renders the report (markdown) from the summary lines.

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
