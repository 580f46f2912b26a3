#!/usr/bin/env bash
# bench/reservations.sh: committed reservations per second on one hot sku,
# at the store level (no HTTP), the plain way and with group commit, on
# PostgreSQL and on SQLite, in one run.
#
# Methods, each one measured run per round:
#   pgbench   the textbook conditional UPDATE ... WHERE qty >= 1, one
#             durable transaction each (bench/reservation-baseline.sh with
#             ROUNDS=1): the ceiling on this machine. PostgreSQL only.
#   plain     the shop's reservation transaction (ledger::commit) with a
#             batch of one per request, PLAIN_CLIENTS concurrent callers
#             all queuing on the product row (the `reservations` example).
#   grouped   the same transaction through GroupCommit: concurrent requests
#             for the sku coalesced into one transaction, GROUPED_CLIENTS
#             concurrent callers.
# A reservation is 1 unit for a distinct buyer under per_user_limit 1 (see
# crates/inventory/examples/reservations.rs); every example run checks the
# store's invariants afterwards and this script stops at the first breach.
#
# Usage: bench/reservations.sh
# Environment knobs (defaults in brackets):
#   DATABASE_URL [postgres://postgres@127.0.0.1:5432/test]  the server to
#                       use (127.0.0.1 or localhost only); every run makes
#                       and drops its own database or table there
#   ENGINES ["postgres sqlite"]    which stores; SQLite files go in a temp dir
#   METHODS ["pgbench plain grouped"]  order within a round and engine
#   ROUNDS [3]          rounds; the table shows medians
#   DURATION [10]       seconds measured per run
#   WARMUP [2]          seconds of load before each measured window
#                       (pgbench has none: its first second is cheap)
#   PLAIN_CLIENTS [16]  concurrent callers for pgbench and plain
#   GROUPED_CLIENTS [2000]  concurrent callers for grouped
#   MAX_BATCH []        grouped: most requests per transaction (empty: the
#                       library's default, Settings::default().max_batch)
#   EXAMPLE_ARGS []     more flags for every example run (e.g.
#                       --idempotency-keys)
#   QUIET_WAIT_MAX [600] seconds to wait for a quiet machine before a run
#   BUSY_MAX [0.25]     CPU cores others may use and still count as quiet
#   KEEP_TMP [0]        1 keeps the temp dir (logs of every run)
#
# Durable commits only: the example refuses a server with fsync or
# synchronous_commit off, and SQLite runs in WAL with synchronous=FULL.
# Every run is bounded by `timeout`; the example drops its database on
# SIGTERM, and everything started here is stopped on exit and on Ctrl-C.

set -euo pipefail
# Fixed number formats for awk and sort whatever the user's locale.
export LC_ALL=C

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
ENGINES=${ENGINES:-"postgres sqlite"}
METHODS=${METHODS:-"pgbench plain grouped"}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
PLAIN_CLIENTS=${PLAIN_CLIENTS:-16}
GROUPED_CLIENTS=${GROUPED_CLIENTS:-2000}
MAX_BATCH=${MAX_BATCH:-}
EXAMPLE_ARGS=${EXAMPLE_ARGS:-}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

# The grouped target of the issue, in committed reservations/s on PostgreSQL.
TARGET=25000

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ preparation

check_settings() {
  [[ $ROUNDS =~ ^[1-9][0-9]*$ && $DURATION =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] ||
    die "ROUNDS and DURATION must be positive integers and WARMUP a non-negative one"
  [[ $PLAIN_CLIENTS =~ ^[1-9][0-9]*$ && $GROUPED_CLIENTS =~ ^[1-9][0-9]*$ ]] ||
    die "PLAIN_CLIENTS and GROUPED_CLIENTS must be positive integers"
  [[ -z $MAX_BATCH || $MAX_BATCH =~ ^[1-9][0-9]*$ ]] || die "MAX_BATCH must be a positive integer"
  # Load goes to this machine only.
  [[ $DATABASE_URL =~ ^postgres(ql)?://([^@/]*@)?(127\.0\.0\.1|localhost)(:[0-9]+)?(/|$) ]] ||
    die "DATABASE_URL must name a PostgreSQL server on 127.0.0.1 (got $DATABASE_URL)"
  local tool
  for tool in cargo psql pgbench timeout getconf; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (PostgreSQL client tools: apt-get install postgresql-client)"
  done
  command psql -X -q -At "$DATABASE_URL" -c 'SELECT 1' >/dev/null ||
    die "PostgreSQL at $DATABASE_URL does not answer; start it or set DATABASE_URL"
}

# Builds the example and runs a private copy, so that a concurrent build by
# someone else cannot swap the binary between runs.
build() {
  log "building (cargo build --release -p stampede-inventory --example reservations)"
  (cd "$ROOT" && cargo build --release -p stampede-inventory --example reservations) >&2 ||
    die "cargo build failed"
  cp "$ROOT/target/release/examples/reservations" "$TMP/reservations"
  BUILT_AT=$(stat -c '%y' "$ROOT/target/release/examples/reservations" | cut -d. -f1)
}

# ------------------------------------------------------------- measuring

# One pgbench run; sets RESULT to its rate (units taken from the row per
# second). Results travel in variables, not $(...), so that the run is a
# child of this shell and the cleanup trap can stop it.
run_pgbench() {
  local log_file=$1
  bounded "$log_file" $((DURATION + 120)) env ROUNDS=1 DURATION="$DURATION" CLIENTS="$PLAIN_CLIENTS" \
    DATABASE_URL="$DATABASE_URL" "$SCRIPT_DIR/reservation-baseline.sh" ||
    { cat "$log_file" >&2; die "bench/reservation-baseline.sh failed"; }
  RESULT=$(awk '/^median:/ {print $2}' "$log_file")
  [[ -n $RESULT ]] || die "bench/reservation-baseline.sh printed no median (log: $log_file)"
}

# One example run; sets RESULT to its tab-separated `result` record.
run_example() {
  local log_file=$1 engine=$2 method=$3 url clients args
  case $engine in
    postgres) url=$DATABASE_URL ;;
    sqlite) url="sqlite://$TMP/run-$RUN_NO.db" ;;
    *) die "unknown engine $engine (ENGINES takes postgres and sqlite)" ;;
  esac
  clients=$PLAIN_CLIENTS
  args=()
  if [[ $method == grouped ]]; then
    clients=$GROUPED_CLIENTS
    [[ -z $MAX_BATCH ]] || args+=(--max-batch "$MAX_BATCH")
  fi
  # shellcheck disable=SC2206 # EXAMPLE_ARGS is a list of flags on purpose
  args+=($EXAMPLE_ARGS)
  # Seeding a million buyers takes seconds; 300 s more is far beyond it.
  bounded "$log_file" $((WARMUP + DURATION + 300)) "$TMP/reservations" --database-url "$url" \
    --mode "$method" --clients "$clients" --duration "$DURATION" --warmup "$WARMUP" "${args[@]}" ||
    { cat "$log_file" >&2; die "$method on $engine failed (invariant broken, errors, or no result); log above"; }
  RESULT=$(grep '^result' "$log_file") || die "$method on $engine printed no result line"
}

# `key=value` fields of a result record, by key.
field() { tr '\t' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# One measured run, appended to $RAW as: round, engine, method, clients,
# rate, p50 ms, p99 ms, max ms, mean batch, quiet, load1.
measure() {
  local round=$1 engine=$2 method=$3 log_file result line
  RUN_NO=$((RUN_NO + 1))
  log_file="$TMP/run-$RUN_NO-$engine-$method.log"
  wait_quiet
  log "round $round: $method on $engine (quiet: $QUIET, load1 $LOAD1)"
  if [[ $method == pgbench ]]; then
    run_pgbench "$log_file"
    line=$(printf '%s\t%s\t%s\t%s\t%s\t-\t-\t-\t1.0\t%s\t%s' "$round" "$engine" "$method" \
      "$PLAIN_CLIENTS" "$RESULT" "$QUIET" "$LOAD1")
  else
    run_example "$log_file" "$engine" "$method"
    result=$RESULT
    VERSIONS[$engine]=$(field "$result" version)
    line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$round" "$engine" "$method" \
      "$(field "$result" clients)" "$(field "$result" rate)" "$(field "$result" p50_ms)" \
      "$(field "$result" p99_ms)" "$(field "$result" max_ms)" "$(field "$result" batch_mean)" \
      "$QUIET" "$LOAD1")
  fi
  printf '%s\n' "$line" >>"$RAW"
  printf '%s\n' "$line" | awk -F'\t' '{
    printf "run: round %s %-8s %-7s %5s clients %7s reservations/s  p50 %s ms  p99 %s ms  max %s ms  batch %s  quiet %s\n",
      $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
  }'
}

# ------------------------------------------------------------- reporting

# Per engine and method: clients, every round's rate, and the medians of
# rate, p50, p99, the largest max, the median mean batch, noisy runs.
summarize() {
  awk -F'\t' '
    function median(a, n,   i, j, t) {
      for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    {
      k = $2 "\t" $3
      if (!(k in n)) order[++keys] = k
      i = ++n[k]; clients[k] = $4; rounds[k] = rounds[k] (i > 1 ? " · " : "") $5
      rate[k, i] = $5; p50[k, i] = $6; p99[k, i] = $7; bat[k, i] = $9
      if ($8 != "-" && $8 + 0 > mx[k] + 0) mx[k] = $8
      if ($10 != "yes") noisy[k]++
    }
    END {
      for (o = 1; o <= keys; o++) {
        k = order[o]
        for (i = 1; i <= n[k]; i++) { r[i] = rate[k, i]; a[i] = p50[k, i]; b[i] = p99[k, i]; c[i] = bat[k, i] }
        pg = (p50[k, 1] == "-")
        printf "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%.1f\t%d\n", k, clients[k], rounds[k], median(r, n[k]),
          pg ? "-" : sprintf("%.2f", median(a, n[k])), pg ? "-" : sprintf("%.2f", median(b, n[k])),
          pg ? "-" : mx[k], median(c, n[k]), noisy[k] + 0
      }
    }' "$RAW"
}

report() {
  local summary=$1
  echo "| engine | method | clients | rounds (reservations/s) | median reservations/s | p50 ms | p99 ms | max ms | mean batch |"
  echo "| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |"
  awk -F'\t' '{
    printf "| %s | %s | %s | %s | **%s** | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9
  }' <<<"$summary"
  echo
  echo "Medians of $ROUNDS rounds of ${DURATION}s (examples after a ${WARMUP}s warm-up); latency is per reservation, from the call to its committed reply; max is the largest of all rounds."
  local noisy
  noisy=$(awk -F'\t' '$10 > 0 {printf "%s%s %s (%d runs)", (c++ ? ", " : ""), $1, $2, $10}' <<<"$summary")
  if [[ -n $noisy ]]; then
    echo
    echo "WARNING: runs measured on a busy machine (quiet wait timed out): $noisy."
  fi
  echo
  awk -F'\t' -v target="$TARGET" '
    { rate[$1, $2] = $5 }
    END {
      split("postgres sqlite", engines, " ")
      for (i = 1; i <= 2; i++) {
        e = engines[i]
        if ((e, "grouped") in rate && (e, "plain") in rate && rate[e, "plain"] > 0)
          printf "- %s: grouped / plain = %.1fx\n", e, rate[e, "grouped"] / rate[e, "plain"]
      }
      if (("postgres", "grouped") in rate)
        printf "- grouped on PostgreSQL: %d committed reservations/s (target >= %d: %s)\n",
          rate["postgres", "grouped"], target, (rate["postgres", "grouped"] >= target ? "met" : "NOT met")
    }' <<<"$summary"
}

machine_facts() {
  echo "- nproc: $(nproc)"
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "- kernel: $(uname -r)"
  echo "- PostgreSQL: $(command psql -X -At "$DATABASE_URL" -c 'SHOW server_version') (synchronous_commit=$(command psql -X -At "$DATABASE_URL" -c 'SHOW synchronous_commit'), fsync=$(command psql -X -At "$DATABASE_URL" -c 'SHOW fsync'))"
  [[ -z ${VERSIONS[sqlite]:-} ]] || echo "- SQLite: ${VERSIONS[sqlite]} (bundled by sqlx; WAL, synchronous=FULL), files in $(df -T "$TMP" | awk 'NR == 2 {print $2 " on " $1}')"
  echo "- $(command pgbench --version)"
  echo "- example: release build of $BUILT_AT (cargo build --release -p stampede-inventory --example reservations)"
  echo "- runs: $ROUNDS rounds of ${DURATION}s, warm-up ${WARMUP}s; plain $PLAIN_CLIENTS clients, grouped $GROUPED_CLIENTS clients, max batch ${MAX_BATCH:-library default}${EXAMPLE_ARGS:+, extra flags: $EXAMPLE_ARGS}"
}

# ------------------------------------------------------------------- main

main() {
  check_settings
  TMP=$(mktemp -d /tmp/stampede-reservations-bench.XXXXXX)
  RAW="$TMP/raw.tsv"
  RUN_NO=0
  declare -gA VERSIONS=()
  build

  local round engine method
  echo "# raw runs (round, engine, method, clients, reservations/s, p50 ms, p99 ms, max ms, mean batch, quiet, load1)"
  for ((round = 1; round <= ROUNDS; round++)); do
    for engine in $ENGINES; do
      for method in $METHODS; do
        [[ $method == pgbench && $engine != postgres ]] && continue
        measure "$round" "$engine" "$method"
      done
    done
  done

  publish reservations "Reservation benchmark" \
    "ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP PLAIN_CLIENTS=$PLAIN_CLIENTS GROUPED_CLIENTS=$GROUPED_CLIENTS MAX_BATCH=${MAX_BATCH:-default}" \
    "round, engine, method, clients, reservations/s, p50 ms, p99 ms, max ms, mean batch, quiet, load1"
}

main "$@"
