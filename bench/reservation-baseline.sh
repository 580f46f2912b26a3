#!/usr/bin/env bash
# bench/reservation-baseline.sh: the ceiling of the plain way to reserve
# stock on one hot row, measured with pgbench.
#
# Every client runs the textbook reservation, one durable transaction each:
#   UPDATE stock SET qty = qty - 1 WHERE sku = 'HOT' AND qty >= 1;
# All of them contend for the same row lock, so the row serialises the
# commits; this is the number the shop's reservation path has to beat
# (issue 3: at least 25,000 committed reservations/s on one sku).
#
# With BATCH=N it measures what coalescing buys (group commit, the design
# issue 3 suggests): each transaction takes N units at once and inserts N
# order rows, as a batcher that gathered N concurrent requests would; the
# figure reported is units, i.e. reservations, per second.
#
# Usage: bench/reservation-baseline.sh
#   DATABASE_URL [postgres://postgres@127.0.0.1:5432/test]
#   CLIENTS [16]  DURATION [10]  ROUNDS [3]  BATCH [1]
# It creates and drops its own table (stampede_bench_stock); durable commits
# (synchronous_commit as the server has it, normally on) are kept.
set -euo pipefail
export LC_ALL=C

DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}
CLIENTS=${CLIENTS:-16}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
BATCH=${BATCH:-1}

command -v pgbench >/dev/null || { echo "pgbench not found (apt-get install postgresql-client)" >&2; exit 1; }
psql() { command psql -X -q -v ON_ERROR_STOP=1 "$DATABASE_URL" "$@"; }

script=$(mktemp)
drop_tables() { psql -c "DROP TABLE IF EXISTS stampede_bench_stock, stampede_bench_orders"; }
trap 'rm -f "$script"; drop_tables 2>/dev/null || true' EXIT

drop_tables 2>/dev/null
psql -c "CREATE TABLE stampede_bench_stock (sku text PRIMARY KEY, qty bigint NOT NULL CHECK (qty >= 0))" \
     -c "CREATE TABLE stampede_bench_orders (id bigserial PRIMARY KEY, sku text NOT NULL, quantity int NOT NULL)" \
     -c "INSERT INTO stampede_bench_stock VALUES ('HOT', 1000000000)"
if ((BATCH == 1)); then
  echo "UPDATE stampede_bench_stock SET qty = qty - 1 WHERE sku = 'HOT' AND qty >= 1;" >"$script"
else
  cat >"$script" <<SQL
BEGIN;
UPDATE stampede_bench_stock SET qty = qty - $BATCH WHERE sku = 'HOT' AND qty >= $BATCH;
INSERT INTO stampede_bench_orders (sku, quantity) SELECT 'HOT', 1 FROM generate_series(1, $BATCH);
COMMIT;
SQL
fi

echo "server: $(psql -At -c 'SELECT version()')"
echo "synchronous_commit=$(psql -At -c 'SHOW synchronous_commit') fsync=$(psql -At -c 'SHOW fsync')"
echo "pgbench -n -c $CLIENTS -j 2 -T $DURATION, $BATCH unit(s) per transaction, $ROUNDS rounds"
results=()
for ((round = 1; round <= ROUNDS; round++)); do
  before=$(psql -At -c "SELECT qty FROM stampede_bench_stock")
  pgbench -n -c "$CLIENTS" -j 2 -T "$DURATION" -f "$script" "$DATABASE_URL" >/dev/null 2>&1
  after=$(psql -At -c "SELECT qty FROM stampede_bench_stock")
  # Counted from the row itself, not from pgbench: only committed units count.
  rate=$(((before - after) / DURATION))
  echo "round $round: $rate committed reservations/s ($((before - after)) units)"
  results+=("$rate")
done
median=$(printf '%s\n' "${results[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
echo "median: $median committed reservations/s on one row"
