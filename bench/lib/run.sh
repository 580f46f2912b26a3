# bench/lib/run.sh: running one benchmark program at a time under a time
# limit, reading its `result` record, and cleaning up after the script.
# Sourced by bench scripts that run an example program per measurement;
# they define log, TMP (their temp dir, or empty) and KEEP_TMP first, and
# install the traps:
#   trap cleanup EXIT; trap 'exit 130' INT; trap 'exit 143' TERM

# PID of the `timeout` wrapping the run in progress; TERM to it reaches
# the run, which cleans up after itself (its database, its children).
CURRENT_PID=""

# Stops the run in progress and removes the temp dir, which is kept (with
# the logs of every run) on failure or when KEEP_TMP=1.
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  if [[ -n $CURRENT_PID ]]; then
    kill -TERM "$CURRENT_PID" 2>/dev/null
    wait "$CURRENT_PID" 2>/dev/null
  fi
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ $KEEP_TMP == 1 || $rc != 0 ]]; then
      log "kept temp dir (logs of every run): $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  exit "$rc"
}

# bounded LOG SECONDS COMMAND...: runs COMMAND under `timeout` in the
# background and waits, so that Ctrl-C reaches the trap at once; output
# goes to LOG. Returns COMMAND's exit status.
bounded() {
  local log_file=$1 limit=$2 rc=0
  shift 2
  timeout --kill-after=15 "$limit" "$@" >"$log_file" 2>&1 &
  CURRENT_PID=$!
  wait "$CURRENT_PID" || rc=$?
  CURRENT_PID=""
  return "$rc"
}

# field RECORD KEY: the value of `KEY=value` in a tab-separated record.
field() { tr '\t' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# An awk function for summaries: median(a, n) of a[1..n] (sorts a).
# shellcheck disable=SC2016 # awk code, expanded by awk
AWK_MEDIAN='
function median(a, n,   i, j, t) {
  for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
  return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}'
