#!/usr/bin/env bash
# bench/jobs.sh: job queue throughput, no-op jobs claimed and completed
# per second by several worker processes, on PostgreSQL and on SQLite.
#
# Each run is one burn-down by crates/jobs/examples/jobs_bench.rs: JOBS
# no-op jobs are enqueued first (ENQUEUE_BATCH per statement,
# ENQUEUE_CONCURRENCY at a time; reported as the enqueue rate), then N
# worker processes with CONCURRENCY claim loops each claim up to BATCH
# jobs, run the no-op and complete the batch in one statement, until the
# queue is empty. The rate is jobs ÷ (first claim → last completion).
# Every run gets a fresh database, checks afterwards that every job was
# completed exactly once at attempt 1, and this script stops at the first
# run that fails.
#
# Usage: bench/jobs.sh
# Environment knobs (defaults in brackets):
#   DATABASE_URL [postgres://postgres@127.0.0.1:5432/test]  the server to
#                       use (127.0.0.1 or localhost only); every run makes
#                       and drops its own database there
#   ENGINES ["postgres sqlite"]  which stores; SQLite files go in a temp dir
#   WORKERS ["1 2 4"]   worker-process counts, each measured every round
#   ROUNDS [3]          rounds; the table shows medians
#   JOBS [500000]       jobs burnt down per run
#   CONCURRENCY [2]     claim loops per worker process
#   BATCH [500]         most jobs per claim (and per completion)
#   ENQUEUE_BATCH [100] jobs per enqueue statement
#   ENQUEUE_CONCURRENCY [4]  concurrent enqueue statements
#   EXAMPLE_ARGS []     more flags for every run
#   QUIET_WAIT_MAX [600] seconds to wait for a quiet machine before a run
#   BUSY_MAX [0.25]     CPU cores others may use and still count as quiet
#   KEEP_TMP [0]        1 keeps the temp dir (logs of every run)
#
# Durable commits only: the example refuses a server with fsync or
# synchronous_commit off, and SQLite runs in WAL with synchronous=FULL.
# Every run is bounded by `timeout`; the example drops its database and
# stops its worker processes on SIGTERM, and the run in progress is
# stopped on exit and on Ctrl-C.

set -euo pipefail
# Fixed number formats for awk and sort whatever the user's locale.
export LC_ALL=C

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
ENGINES=${ENGINES:-"postgres sqlite"}
WORKERS=${WORKERS:-"1 2 4"}
ROUNDS=${ROUNDS:-3}
JOBS=${JOBS:-500000}
CONCURRENCY=${CONCURRENCY:-2}
BATCH=${BATCH:-500}
ENQUEUE_BATCH=${ENQUEUE_BATCH:-100}
ENQUEUE_CONCURRENCY=${ENQUEUE_CONCURRENCY:-4}
EXAMPLE_ARGS=${EXAMPLE_ARGS:-}

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$SCRIPT_DIR/lib/common.sh"

# The target of the issue, in jobs/s on PostgreSQL.
TARGET=20000
# What each line of the raw runs file holds.
COLUMNS="round, engine, workers, loops, batch, jobs/s, enqueue jobs/s, p50 ms, p99 ms, max ms, mean batch, claim ms, complete ms, quiet, load1"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ preparation

check_settings() {
  local knob
  for knob in ROUNDS JOBS CONCURRENCY BATCH ENQUEUE_BATCH ENQUEUE_CONCURRENCY; do
    [[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got ${!knob})"
  done
  for knob in $WORKERS; do
    [[ $knob =~ ^[1-9][0-9]*$ ]] || die "WORKERS must list positive integers (got $WORKERS)"
  done
  # Load goes to this machine only.
  [[ $DATABASE_URL =~ ^postgres(ql)?://([^@/]*@)?(127\.0\.0\.1|localhost)(:[0-9]+)?(/|$) ]] ||
    die "DATABASE_URL must name a PostgreSQL server on 127.0.0.1 (got $DATABASE_URL)"
  local tool
  for tool in cargo psql timeout getconf; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (PostgreSQL client tools: apt-get install postgresql-client)"
  done
  if [[ " $ENGINES " == *" postgres "* ]]; then
    command psql -X -q -At "$DATABASE_URL" -c 'SELECT 1' >/dev/null ||
      die "PostgreSQL at $DATABASE_URL does not answer; start it or set DATABASE_URL"
  fi
}

# Builds the example and runs a private copy, so that a concurrent build by
# someone else cannot swap the binary between runs (its worker processes
# re-run the same copy).
build() {
  log "building (cargo build --release -p stampede-jobs --example jobs_bench)"
  (cd "$ROOT" && cargo build --release -p stampede-jobs --example jobs_bench) >&2 ||
    die "cargo build failed"
  cp "$ROOT/target/release/examples/jobs_bench" "$TMP/jobs_bench"
  BUILT_AT=$(stat -c '%y' "$ROOT/target/release/examples/jobs_bench" | cut -d. -f1)
}

# ------------------------------------------------------------- measuring

# One example run; sets RESULT to its tab-separated `result` record.
# Results travel in variables, not $(...), so that the run is a child of
# this shell and the cleanup trap can stop it.
run_example() {
  local log_file=$1 engine=$2 workers=$3 url args
  case $engine in
    postgres) url=$DATABASE_URL ;;
    sqlite) url="sqlite://$TMP/run-$RUN_NO.db" ;;
    *) die "unknown engine $engine (ENGINES takes postgres and sqlite)" ;;
  esac
  # shellcheck disable=SC2206 # EXAMPLE_ARGS is a list of flags on purpose
  args=($EXAMPLE_ARGS)
  # Generous: a slow run does well under 2,000 jobs/s for enqueue and burn.
  bounded "$log_file" $((JOBS / 1000 + 120)) "$TMP/jobs_bench" --database-url "$url" \
    --jobs "$JOBS" --workers "$workers" --concurrency "$CONCURRENCY" --batch "$BATCH" \
    --enqueue-batch "$ENQUEUE_BATCH" --enqueue-concurrency "$ENQUEUE_CONCURRENCY" "${args[@]}" ||
    { cat "$log_file" >&2; die "$workers workers on $engine failed (invariant broken, errors, or no result); log above"; }
  RESULT=$(grep '^result' "$log_file") || die "$workers workers on $engine printed no result line"
}

# One measured run, appended to $RAW as: round, engine, workers, loops per
# worker, batch, jobs/s, enqueue jobs/s, p50 ms, p99 ms, max ms, mean
# batch, mean claim ms, mean complete ms (per batch), quiet, load1.
measure() {
  local round=$1 engine=$2 workers=$3 log_file result line
  RUN_NO=$((RUN_NO + 1))
  log_file="$TMP/run-$RUN_NO-$engine-$workers.log"
  wait_quiet
  log "round $round: $workers worker processes on $engine (quiet: $QUIET, load1 $LOAD1)"
  run_example "$log_file" "$engine" "$workers"
  result=$RESULT
  VERSIONS[$engine]=$(field "$result" version)
  line=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' "$round" "$engine" "$workers" \
    "$(field "$result" concurrency)" "$(field "$result" batch)" "$(field "$result" rate)" \
    "$(field "$result" enqueue_rate)" "$(field "$result" p50_ms)" "$(field "$result" p99_ms)" \
    "$(field "$result" max_ms)" "$(field "$result" batch_mean)" "$(field "$result" claim_ms)" \
    "$(field "$result" complete_ms)" "$QUIET" "$LOAD1")
  printf '%s\n' "$line" >>"$RAW"
  printf '%s\n' "$line" | awk -F'\t' '{
    printf "run: round %s %-8s %s workers × %s loops  %7s jobs/s  enqueue %7s jobs/s  p50 %s ms  p99 %s ms  max %s ms  batch %s (claim %s ms, complete %s ms)  quiet %s\n",
      $1, $2, $3, $4, $6, $7, $8, $9, $10, $11, $12, $13, $14
  }'
}

# ------------------------------------------------------------- reporting

# Per engine and worker count: loops, batch, every round's rate, and the
# medians of rate, enqueue rate, p50 and p99, the largest max, the medians
# of the mean claim and complete times, and the number of noisy runs.
summarize() {
  awk -F'\t' "$AWK_MEDIAN"'
    {
      k = $2 "\t" $3
      if (!(k in n)) order[++keys] = k
      i = ++n[k]; loops[k] = $4; batch[k] = $5; rounds[k] = rounds[k] (i > 1 ? " · " : "") $6
      rate[k, i] = $6; enq[k, i] = $7; p50[k, i] = $8; p99[k, i] = $9; cl[k, i] = $12; co[k, i] = $13
      if ($10 + 0 > mx[k] + 0) mx[k] = $10
      if ($14 != "yes") noisy[k]++
    }
    END {
      for (o = 1; o <= keys; o++) {
        k = order[o]
        for (i = 1; i <= n[k]; i++) {
          r[i] = rate[k, i]; e[i] = enq[k, i]; a[i] = p50[k, i]; b[i] = p99[k, i]; c[i] = cl[k, i]; d[i] = co[k, i]
        }
        printf "%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.2f\t%.2f\t%s\t%.2f\t%.2f\t%d\n", k, loops[k], batch[k], rounds[k],
          median(r, n[k]), median(e, n[k]), median(a, n[k]), median(b, n[k]), mx[k], median(c, n[k]), median(d, n[k]),
          noisy[k] + 0
      }
    }' "$RAW"
}

report() {
  local summary=$1
  echo "| engine | worker processes | loops each | batch | rounds (jobs/s) | median jobs/s | p50 ms | p99 ms | max ms | claim / complete ms | median enqueue jobs/s |"
  echo "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"
  awk -F'\t' '{
    printf "| %s | %s | %s | %s | %s | **%s** | %s | %s | %s | %s / %s | %s |\n", $1, $2, $3, $4, $5, $6, $8, $9, $10, $11, $12, $7
  }' <<<"$summary"
  echo
  echo "Medians of $ROUNDS rounds of $JOBS jobs each; jobs/s is claim + no-op + complete, from the first claim to the last completion; latency is per job, from the start of its claim to its completion's return; max is the largest of all rounds; claim / complete is the mean time of one claim and of one batch's completion statement, round trip and commit included."
  noisy_warning "$summary" 13 '$1 " with " $2 " workers"'
  echo
  awk -F'\t' -v target="$TARGET" '
    $1 == "postgres" {
      printf "- PostgreSQL, %s worker processes: %d jobs/s (target >= %d: %s)\n", $2, $6, target, ($6 >= target ? "met" : "NOT met")
    }' <<<"$summary"
}

machine_facts() {
  local psql=(command psql -X -At "$DATABASE_URL" -c)
  echo "- nproc: $(nproc)"
  echo "- CPU: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "- kernel: $(uname -r)"
  [[ -z ${VERSIONS[postgres]:-} ]] ||
    echo "- PostgreSQL: $("${psql[@]}" 'SHOW server_version') (synchronous_commit=$("${psql[@]}" 'SHOW synchronous_commit'), fsync=$("${psql[@]}" 'SHOW fsync'), shared_buffers=$("${psql[@]}" 'SHOW shared_buffers'), max_wal_size=$("${psql[@]}" 'SHOW max_wal_size'))"
  [[ -z ${VERSIONS[sqlite]:-} ]] ||
    echo "- SQLite: ${VERSIONS[sqlite]} (bundled by sqlx; WAL, synchronous=FULL), files in $(df -T "$TMP" | awk 'NR == 2 {print $2 " on " $1}')"
  echo "- example: release build of $BUILT_AT (cargo build --release -p stampede-jobs --example jobs_bench)"
  echo "- runs: $ROUNDS rounds of $JOBS jobs; worker processes: $WORKERS; $CONCURRENCY claim loops each, batch $BATCH; enqueue $ENQUEUE_BATCH per statement, $ENQUEUE_CONCURRENCY at a time${EXAMPLE_ARGS:+; extra flags: $EXAMPLE_ARGS}"
}

# ------------------------------------------------------------------- main

main() {
  check_settings
  TMP=$(mktemp -d /tmp/stampede-jobs-bench.XXXXXX)
  RAW="$TMP/raw.tsv"
  RUN_NO=0
  declare -gA VERSIONS=()
  build

  local round engine workers
  echo "# raw runs ($COLUMNS)"
  for ((round = 1; round <= ROUNDS; round++)); do
    for engine in $ENGINES; do
      for workers in $WORKERS; do
        measure "$round" "$engine" "$workers"
      done
    done
  done

  publish jobs "Job queue benchmark" \
    "ROUNDS=$ROUNDS JOBS=$JOBS WORKERS=\"$WORKERS\" CONCURRENCY=$CONCURRENCY BATCH=$BATCH ENQUEUE_BATCH=$ENQUEUE_BATCH ENQUEUE_CONCURRENCY=$ENQUEUE_CONCURRENCY" \
    "$COLUMNS"
}

main "$@"
