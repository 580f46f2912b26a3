# bench/lib/quiet.sh: waiting for a quiet machine before a measured run.
# Sourced by the bench scripts, which define log, warn, CLK_TCK, BUSY_MAX
# and QUIET_WAIT_MAX first.

# Busy ticks of the whole machine (all CPUs) from /proc/stat: everything
# except idle and iowait.
system_busy_ticks() {
  awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}

# Waits until nobody else is compiling and the machine is idle apart from
# us. The 1-minute load average is printed but not used as the gate: our
# own previous run keeps it near 2 for a minute. Instead we gate on rustc/
# cargo/linker processes and on a 1-second sample of CPU use, taken while
# all our processes are idle. Returns with QUIET=yes, or QUIET=no after
# QUIET_WAIT_MAX seconds (then we measure anyway and flag the run).
wait_quiet() {
  local waited=0 builders busy0 busy1 busy load1
  while :; do
    load1=$(cut -d' ' -f1 /proc/loadavg)
    builders=$(ps -eo pid=,comm= | awk '$2 ~ /^(cargo|rustc|cc|ld|ld\.lld|rust-lld|clippy-driver)$/ {printf "%s(%s) ", $2, $1}')
    busy0=$(system_busy_ticks)
    sleep 1
    busy1=$(system_busy_ticks)
    busy=$(awk -v a="$busy0" -v b="$busy1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
    if [[ -z $builders ]] && awk -v b="$busy" -v m="$BUSY_MAX" 'BEGIN {exit !(b <= m)}'; then
      QUIET=yes
      LOAD1=$load1
      return 0
    fi
    if ((waited >= QUIET_WAIT_MAX)); then
      warn "machine still busy after ${QUIET_WAIT_MAX}s (builders: ${builders:-none}; CPU ${busy} cores; load1 $load1): measuring anyway, run flagged noisy"
      QUIET=no
      LOAD1=$load1
      return 0
    fi
    log "waiting for a quiet machine (builders: ${builders:-none}; CPU ${busy} cores; load1 $load1)"
    sleep 10
    waited=$((waited + 11))
  done
}

# noisy_warning SUMMARY COLUMN LABEL: the report's warning naming the rows
# of SUMMARY (tab-separated) with runs measured on a busy machine; COLUMN
# holds that count, LABEL is an awk expression naming a row. Prints nothing
# when every run was quiet.
noisy_warning() {
  local noisy
  noisy=$(awk -F'\t' -v col="$2" "\$col > 0 { printf \"%s%s (%d runs)\", (c++ ? \", \" : \"\"), $3, \$col }" <<<"$1")
  [[ -z $noisy ]] || printf '\nWARNING: runs measured on a busy machine (quiet wait timed out): %s.\n' "$noisy"
}
