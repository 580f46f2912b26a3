#!/usr/bin/env bash
# bench/flash-sale.sh: a whole flash sale, end to end, through the front
# door: `stampede up` (gateway, shop nodes, worker) on SQLite and on
# PostgreSQL, and side by side the classic Django stack users would build
# instead (bench/django: gunicorn + gevent, PostgreSQL, Redis cache and
# sessions), with `stampede storm` sending the same crowds at each, on one
# machine.
#
# Crowds (users, units, concurrent users, share of product-page reads):
#   small   2,000 users,  500 units,  64 concurrent, half reads
#   large  20,000 users, 5,000 units, 256 concurrent, half reads
# Each crowd runs ROUNDS times in a row on one cluster per engine and node
# count, the small crowd first (every run makes its own product and users,
# named after its seed). Every run
# checks the contract's invariants; the script stops at the first breach.
#
# Targets (2-core machine, load generator on the same machine): zero
# violations always; on PostgreSQL, at least 10,000 purchase attempts/s in
# the large crowd and order p99 under 15 ms in the small one.
#
# Usage: bench/flash-sale.sh
# Environment knobs (defaults in brackets):
#   ENGINES ["sqlite postgres django"]  what serves the sale: stampede on
#                       SQLite, stampede on PostgreSQL, the Django stack;
#                       also postgres-redis: stampede on PostgreSQL with
#                       its sessions (and sold-out announcements) in Redis
#   REDIS_URL [redis://127.0.0.1:6379/15]  the Redis of postgres-redis; its
#                       database is emptied before and after each cluster
#   CROWDS ["small large"]       crowds, in order within a round
#   ROUNDS [3]          runs of each crowd per engine; the table shows medians
#   NODES ["1 3"]       shop node counts to run the cluster with, each a
#                       cluster of its own (on two cores one node, which
#                       runs a thread per core, is the fast choice; `up`'s
#                       default of 3 is shown for comparison)
#   DATABASE_URL [postgres://postgres@127.0.0.1:5432/test]  a PostgreSQL
#                       server on 127.0.0.1; the script makes and drops its
#                       own database there
#   STAMPEDE_BIN        use this binary instead of building target/release
#   QUIET_WAIT_MAX [600] seconds to wait for a quiet machine before a run
#   BUSY_MAX [0.25]     CPU cores others may use and still count as quiet
#   KEEP_TMP [0]        1 keeps the temp dir (cluster logs, JSON reports)
#
# storm runs with --threads 1: the load generator shares the machine with
# what it measures, and one thread leaves the most to the system under test
# (as wrk -t1 does in bench/gateway.sh).
# Passwords are hashed cheaply (argon2id, 64 KiB, 1 pass) through
# `up --shop-config`, so that setting up 20,000 users takes seconds; the
# crowd's requests never hash. Load goes to 127.0.0.1 only; every storm is
# bounded by `timeout` and its own --duration, and the clusters are
# stopped on exit and on Ctrl-C.

set -euo pipefail
export LC_ALL=C

ENGINES=${ENGINES:-"sqlite postgres django"}
CROWDS=${CROWDS:-"small large"}
ROUNDS=${ROUNDS:-3}
NODES=${NODES:-"1 3"}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
BENCH_REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/15}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

ATTEMPTS_TARGET=10000
P99_TARGET_MS=15

UP_PID=""
BENCH_DB=""

# The cluster and the bench database go too, then run.sh's cleanup.
cleanup_all() {
  local rc=$?
  set +e
  stop_cluster
  drop_database
  flush_redis
  (exit "$rc")
  cleanup
}
trap cleanup_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# crowd_flags NAME: storm's flags for a crowd.
crowd_flags() {
  case $1 in
    small) echo "--users 2000 --stock 500 --concurrency 64 --read-ratio 0.5" ;;
    large) echo "--users 20000 --stock 5000 --concurrency 256 --read-ratio 0.5" ;;
    *) die "unknown crowd $1 (CROWDS takes small and large)" ;;
  esac
}

check_settings() {
  [[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
  local crowd engine nodes
  for nodes in $NODES; do [[ $nodes =~ ^[1-9][0-9]*$ ]] || die "NODES must be positive integers (got $nodes)"; done
  for crowd in $CROWDS; do crowd_flags "$crowd" >/dev/null; done
  for engine in $ENGINES; do
    [[ $engine =~ ^(sqlite|postgres|postgres-redis|django)$ ]] ||
      die "unknown engine $engine (ENGINES takes sqlite, postgres, postgres-redis and django)"
  done
  if [[ " $ENGINES " == *" postgres-redis "* ]]; then
    [[ $BENCH_REDIS_URL =~ ^redis://(127\.0\.0\.1|localhost)(:[0-9]+)?/[0-9]+$ ]] ||
      die "REDIS_URL must name a Redis database on 127.0.0.1, like redis://127.0.0.1:6379/15 (got $BENCH_REDIS_URL)"
    redis-cli -u "$BENCH_REDIS_URL" ping >/dev/null 2>&1 || die "Redis at $BENCH_REDIS_URL does not answer"
  fi
  if [[ " $ENGINES " =~ " "(postgres|postgres-redis|django)" " ]]; then
    [[ $DATABASE_URL =~ ^postgres(ql)?://([^@/]*@)?(127\.0\.0\.1|localhost)(:[0-9]+)?(/|$) ]] ||
      die "DATABASE_URL must name a PostgreSQL server on 127.0.0.1 (got $DATABASE_URL)"
    command -v psql >/dev/null || die "psql not found (apt-get install postgresql-client)"
    command psql -X -q -At "$DATABASE_URL" -c 'SELECT 1' >/dev/null ||
      die "PostgreSQL at $DATABASE_URL does not answer; start it, set DATABASE_URL, or ENGINES=sqlite"
  fi
  command -v python3 >/dev/null || die "python3 not found (it reads storm's JSON reports)"
}

# Builds (unless STAMPEDE_BIN is set) and runs a private copy of the binary.
build() {
  if [[ -n ${STAMPEDE_BIN:-} ]]; then
    cp "$STAMPEDE_BIN" "$TMP/stampede"
  else
    log "building (cargo build --release -p stampede)"
    (cd "$ROOT" && cargo build --release -p stampede) >&2 || die "cargo build failed"
    cp "$ROOT/target/release/stampede" "$TMP/stampede"
  fi
  BUILT=$("$TMP/stampede" --version)
}

# ------------------------------------------------------------- the cluster

# A fresh database on the PostgreSQL server, for this run only.
create_database() {
  BENCH_DB="stampede_flash_$$"
  command psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "CREATE DATABASE $BENCH_DB" >/dev/null ||
    die "could not create database $BENCH_DB"
  PG_URL="${DATABASE_URL%/*}/$BENCH_DB"
}

# Empties the bench's Redis database (sessions the crowd left).
flush_redis() {
  [[ " $ENGINES " == *" postgres-redis "* ]] || return 0
  redis-cli -u "$BENCH_REDIS_URL" flushdb >/dev/null 2>&1
}

drop_database() {
  [[ -n $BENCH_DB ]] || return 0
  command psql -X -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $BENCH_DB WITH (FORCE)" >/dev/null 2>&1
  BENCH_DB=""
}

# The node counts to run ENGINE with: stampede's from NODES; the Django
# stack has its own shape (bench/django/run.sh: 2 gevent workers).
nodes_for() { if [[ $1 == django ]]; then echo "-"; else echo "$NODES"; fi; }

# start_cluster ENGINE NODES: `stampede up` on ENGINE, or the Django stack;
# sets URL.
start_cluster() {
  local engine=$1 nodes=$2 args=() log_file="$TMP/up-$1-$2.log" waited=0
  if [[ $engine == django ]]; then
    # First start installs its venv from PyPI: allow minutes.
    DJANGO_ADMIN_TOKEN=$ADMIN_TOKEN DJANGO_FAST_PASSWORDS=1 \
      "$SCRIPT_DIR/django/run.sh" "$(free_port)" >"$log_file" 2>&1 &
  else
    args=(up --port 0 --nodes "$nodes" --data-dir "$TMP/data-$engine-$nodes" --shop-config "$TMP/shop.toml")
    if [[ $engine == postgres* ]]; then
      create_database
      args+=(--database-url "$PG_URL")
    fi
    if [[ $engine == postgres-redis ]]; then
      flush_redis
      args+=(--redis-url "$BENCH_REDIS_URL")
    fi
    STAMPEDE_ADMIN_TOKEN=$ADMIN_TOKEN RUST_LOG=warn "$TMP/stampede" "${args[@]}" >"$log_file" 2>&1 &
  fi
  UP_PID=$!
  until URL=$(awk '/^(stampede|django) is up: / {print $4; exit}' "$log_file") && [[ -n $URL ]]; do
    kill -0 "$UP_PID" 2>/dev/null || { cat "$log_file" >&2; die "$engine exited before it was up"; }
    ((waited++ < 6000)) || die "$engine did not come up within 600 s (log: $log_file)"
    sleep 0.1
  done
  log "up on $engine: $URL (shop nodes: $nodes)"
}

# A free port on 127.0.0.1 (for the Django stack, which needs one given).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop_cluster() {
  [[ -n $UP_PID ]] || return 0
  kill -TERM "$UP_PID" 2>/dev/null
  wait "$UP_PID" 2>/dev/null
  UP_PID=""
  drop_database
}

# ------------------------------------------------------------- measuring

# The fields of storm's JSON report the tables need, tab-separated.
read_report() {
  python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
c, o = r["crowd"], r["order_latency"]
reads = [row for row in r["latency"] if row["outcome"] == "read"]
errors = sum(row["count"] for row in r["latency"] if row["outcome"] in ("failed", "unanswered"))
sell = c["time_to_sell_out_seconds"]
print("\t".join(str(v) for v in [
    round(c["attempts_per_second"]), round(c["purchases_per_second"]),
    "-" if sell is None else f"{sell:.3f}", f'{o["p50_ms"]:.2f}', f'{o["p99_ms"]:.2f}',
    f'{reads[0]["p99_ms"]:.2f}' if reads else "-", r["invariants"]["violation_count"], errors,
    round(c["requests_per_second"]), f'{r["setup_seconds"]:.1f}',
]))
EOF
}

# measure ROUND ENGINE NODES CROWD: one storm, appended to $RAW.
measure() {
  local round=$1 engine=$2 nodes=$3 crowd=$4 report_file line
  RUN_NO=$((RUN_NO + 1))
  report_file="$TMP/storm-$RUN_NO-$engine-$nodes-$crowd.json"
  wait_quiet
  log "round $round: $crowd crowd on $engine, $nodes nodes (quiet: $QUIET, load1 $LOAD1)"
  # shellcheck disable=SC2046 # crowd_flags is a list of flags on purpose
  bounded "$report_file" 900 env STAMPEDE_ADMIN_TOKEN="$ADMIN_TOKEN" "$TMP/stampede" storm \
    --target "$URL" $(crowd_flags "$crowd") --threads 1 --duration 300s --seed $((RUN_NO * 7919)) --json --quiet ||
    { cat "$report_file" >&2; die "storm on $engine ($nodes nodes, $crowd crowd) failed or found a violation; report above"; }
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s' "$round" "$engine" "$nodes" "$crowd" "$(read_report "$report_file")" "$QUIET" "$LOAD1")
  printf '%s\n' "$line" >>"$RAW"
  awk -F'\t' '{
    printf "run: round %s %-8s %s nodes %-5s attempts/s %6s purchases/s %6s sell-out %6s s  order p50 %6s p99 %6s ms  read p99 %6s ms  violations %s errors %s\n",
      $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12
  }' <<<"$line"
}

# ------------------------------------------------------------- reporting

# Per engine, node count and crowd: medians of every measured column;
# the sum of violations and errors; runs on a busy machine.
summarize() {
  awk -F'\t' "$AWK_MEDIAN"'
    {
      k = $2 "\t" $3 "\t" $4
      if (!(k in n)) order[++keys] = k
      i = ++n[k]
      for (c = 5; c <= 10; c++) v[k, c, i] = $c
      rps[k, i] = $13; bad[k] += $11; err[k] += $12
      if ($15 != "yes") noisy[k]++
    }
    END {
      for (o = 1; o <= keys; o++) {
        k = order[o]; line = k
        for (c = 5; c <= 10; c++) {
          if (v[k, c, 1] == "-") { line = line "\t-"; continue }
          for (i = 1; i <= n[k]; i++) a[i] = v[k, c, i]
          line = line "\t" median(a, n[k])
        }
        for (i = 1; i <= n[k]; i++) a[i] = rps[k, i]
        printf "%s\t%d\t%d\t%.0f\t%d\n", line, bad[k], err[k], median(a, n[k]), noisy[k] + 0
      }
    }' "$RAW"
}

report() {
  local summary=$1
  echo "| engine | shop nodes | crowd | attempts/s | purchases/s | sell-out s | order p50 ms | order p99 ms | read p99 ms | requests/s | violations | errors |"
  echo "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F'\t' '{
    printf "| %s | %s | %s | **%s** | %s | %s | %s | **%s** | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $12, $10, $11
  }' <<<"$summary"
  echo
  echo "Medians of $ROUNDS runs per engine, node count and crowd; violations and errors are totals over all runs."
  noisy_warning "$summary" 13 '$1 " " $2 " nodes " $3'
  echo
  awk -F'\t' -v at="$ATTEMPTS_TARGET" -v pt="$P99_TARGET_MS" '
    { bad += $10 }
    $1 == "postgres" && $3 == "large" {
      printf "- PostgreSQL, %s node(s), large crowd: %d purchase attempts/s (target >= %d: %s)\n",
        $2, $4, at, ($4 >= at ? "met" : "NOT met")
    }
    $1 == "postgres" && $3 == "small" {
      printf "- PostgreSQL, %s node(s), small crowd: order p99 %.2f ms (target < %d ms: %s)\n",
        $2, $8, pt, ($8 < pt ? "met" : "NOT met")
    }
    $1 == "postgres" && $2 == 1 { st_att[$3] = $4; st_p99[$3] = $8 }
    $1 == "django" { dj_att[$3] = $4; dj_p99[$3] = $8 }
    END {
      printf "- invariant violations over every run: %d (target 0: %s)\n", bad, (bad == 0 ? "met" : "NOT met")
      for (c in dj_att) if (c in st_att && dj_att[c] > 0 && st_p99[c] > 0)
        printf "- %s crowd, stampede (PostgreSQL, 1 node) vs the Django stack: %.0fx the purchase attempts/s, order p99 %.2f ms vs %.0f ms\n",
          c, st_att[c] / dj_att[c], st_p99[c], dj_p99[c]
    }' <<<"$summary"
}

machine_facts() {
  echo "- nproc: $(nproc)"
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "- kernel: $(uname -r)"
  if [[ " $ENGINES " == *" postgres-redis "* ]]; then
    echo "- Redis (postgres-redis): $(redis-server --version | awk '{print $3}' | cut -d= -f2), $BENCH_REDIS_URL"
  fi
  if [[ " $ENGINES " =~ " "(postgres|postgres-redis|django)" " ]]; then
    echo "- PostgreSQL: $(command psql -X -At "$DATABASE_URL" -c 'SHOW server_version') (synchronous_commit=$(command psql -X -At "$DATABASE_URL" -c 'SHOW synchronous_commit'), fsync=$(command psql -X -At "$DATABASE_URL" -c 'SHOW fsync'))"
  fi
  if [[ " $ENGINES " == *" django "* ]]; then
    echo "- the Django stack (bench/django): $(grep -iE '^(django|gunicorn|gevent|psycopg)==' "$SCRIPT_DIR/django/requirements.txt" | tr '\n' ' ')on Python $(python3 -c 'import platform; print(platform.python_version())'), Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2); MD5 password hashing (DJANGO_FAST_PASSWORDS=1), like stampede's cheap argon2 here"
  fi
  echo "- $BUILT, release build; \`stampede up --nodes N\` (gateway least-conn, N shop nodes, worker) for N in $NODES, and \`stampede storm\` on the same machine"
}

# ------------------------------------------------------------------- main

main() {
  check_settings
  TMP=$(mktemp -d /tmp/stampede-flash-sale-bench.XXXXXX)
  RAW="$TMP/raw.tsv"
  RUN_NO=0
  ADMIN_TOKEN="bench-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  printf '[passwords]\nmemory_kib = 64\niterations = 1\n' >"$TMP/shop.toml"
  build

  local engine nodes round crowd
  echo "# raw runs (round, engine, nodes, crowd, attempts/s, purchases/s, sell-out s, order p50 ms, order p99 ms, read p99 ms, violations, errors, requests/s, setup s, quiet, load1)"
  for engine in $ENGINES; do
    for nodes in $(nodes_for "$engine"); do
      start_cluster "$engine" "$nodes"
      # Every run of a crowd, then the next crowd: a small sale measured
      # right after a large one would measure the large one's aftermath
      # (autovacuum, a checkpoint) instead.
      for crowd in $CROWDS; do
        for ((round = 1; round <= ROUNDS; round++)); do
          measure "$round" "$engine" "$nodes" "$crowd"
        done
      done
      stop_cluster
    done
  done

  publish flash-sale "Flash-sale benchmark" "ENGINES=\"$ENGINES\" CROWDS=\"$CROWDS\" ROUNDS=$ROUNDS NODES=\"$NODES\"" \
    "round, engine, nodes, crowd, attempts/s, purchases/s, sell-out s, order p50 ms, order p99 ms, read p99 ms, violations, errors, requests/s, setup s, quiet, load1"
}

main "$@"
