# bench/lib/common.sh: how every bench script that measures a program of
# ours begins: the settings they share (with their defaults), where things
# are, log, warn and die lines naming the script, and the shared helpers
# (run.sh: bounded runs and cleanup; quiet.sh: waiting for a quiet machine;
# publish.sh: the report). Scripts set SCRIPT_DIR first.

QUIET_WAIT_MAX=${QUIET_WAIT_MAX:-600}
BUSY_MAX=${BUSY_MAX:-0.25}
KEEP_TMP=${KEEP_TMP:-0}
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
OUT_DIR="$SCRIPT_DIR/out"
CLK_TCK=$(getconf CLK_TCK)
TMP=""

log() { printf '[%s %(%H:%M:%S)T] %s\n' "${0##*/}" -1 "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
  log "ERROR: $*"
  exit 1
}

# shellcheck source=run.sh
source "$SCRIPT_DIR/lib/run.sh"
# shellcheck source=quiet.sh
source "$SCRIPT_DIR/lib/quiet.sh"
# shellcheck source=publish.sh
source "$SCRIPT_DIR/lib/publish.sh"
