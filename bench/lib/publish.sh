# bench/lib/publish.sh: the end of every bench script's run.
# Sourced by the bench scripts, which define log, OUT_DIR, RAW (the raw
# runs file) and the functions summarize, report and machine_facts first.

# publish NAME TITLE SETTINGS COLUMNS: writes bench/out/NAME-DATE.md (the
# command and its settings, the machine, the result table and the raw runs,
# whose columns COLUMNS names) and prints the machine and the result.
publish() {
  local name=$1 title=$2 settings=$3 columns=$4 summary out_file
  summary=$(summarize)
  mkdir -p "$OUT_DIR"
  out_file="$OUT_DIR/$name-$(date +%F).md"
  [[ -e $out_file ]] && out_file="$OUT_DIR/$name-$(date +%F-%H%M%S).md"
  {
    echo "# $title, $(date '+%F %H:%M %Z')"
    echo
    echo "Command: \`$0\` ($settings)"
    echo
    machine_facts
    echo
    report "$summary"
    echo
    echo "Raw runs ($columns):"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
  } >"$out_file"

  echo
  echo "# machine"
  machine_facts
  echo
  echo "# result"
  report "$summary"
  echo
  log "written to $out_file"
}
