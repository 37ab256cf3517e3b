# What the server did during each attack, from two scrapes of /metrics,
# and the checks' PASS/FAIL record. Sourced by scripts/attack.sh.

# snap FILE: the server's counters, summed over shards (gauges: the
# largest); an empty file when /metrics cannot be read (server gone).
snap() {
  python3 scripts/attack/metrics.py snap "$metrics_url" "$1" \
    || { echo "attack: could not read $metrics_url" >&2; : > "$1"; }
}

# get FILE KEY: one counter of a snapshot; -1 when it has none.
get() { awk -v k="$2" '$1 == k { v = $2 } END { print (v == "" ? -1 : v) }' "$1"; }

# The attacks' rows for the summary: NAME|TOOL-SAID|BEFORE|AFTER.
rows=()
attack_begin() { snap "$tmp/before.snap"; }
attack_end() {
  local name=$1 said=$2 n
  n=${#rows[@]}
  snap "$tmp/after-$n.snap"
  cp "$tmp/before.snap" "$tmp/before-$n.snap"
  rows+=("$name|$said|$tmp/before-$n.snap|$tmp/after-$n.snap")
  last_row=$n
  echo "attack: $name: $said"
}
# row_delta KEY: how much a counter grew during the last attack.
row_delta() { echo $(( $(get "$tmp/after-$last_row.snap" "$1") - $(get "$tmp/before-$last_row.snap" "$1") )); }

failures=()
check() {  # check DESCRIPTION COMMAND...: records PASS/FAIL
  if "${@:2}"; then
    echo "attack: check: $1: ok"
  else
    echo "attack: check: $1: FAILED" >&2
    failures+=("$1")
  fi
}

# summary_table: the rows, one per attack (scripts/attack/metrics.py).
summary_table() { python3 scripts/attack/metrics.py table "$auth" "${rows[@]}"; }
