#!/usr/bin/env bash
# Steering one peer over shards, with SIPp: strict calls (INVITE, 100, 180,
# 200, ACK, BYE, 200; SIPp's default single-socket UDP transport, `-t u1`)
# from one SIPp UAC to one SIPp UAS through sipshard with --shards 2, for
# each --steer mode and I/O backend asked for.
#
#   scripts/steer.sh [CALLS] [RATE] [MODES] [BACKENDS]
#
# Defaults: 5000 calls at 1000 calls/s, MODES "call-id flow shared",
# BACKENDS "mmsg uring". Each run is scripts/interop.sh's part 1
# (INTEROP_ONLY=proxy); the table gives calls failed and the datagrams each
# shard received (sipshard's exit line). Fails when a `call-id` run fails a
# call other than to a datagram lost on the busy generator CPU (SIPp's
# retransmission timeout on a BYE whose 200 was lost: counted apart), or
# leaves a shard under a quarter of the datagrams, or fell back to flow
# for any reason but bpf(2) refused (EPERM, ENOSYS: then it exits 77,
# skipped, like a refused io_uring). `flow` and `shared` are recorded for
# contrast, never failed on: flow keeps the one peer on one shard, shared
# reorders. A backend refused here (io_uring in a container) is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

calls=${1:-5000}
rate=${2:-1000}
modes=${3:-call-id flow shared}
backends=${4:-mmsg uring}

failed=0
skipped=0
rows=()
for io in $backends; do
  for steer in $modes; do
    log=$(mktemp)
    rc=0
    INTEROP_ONLY=proxy scripts/interop.sh "$calls" "$rate" -- --io "$io" --steer "$steer" --shards 2 \
      > "$log" 2>&1 || rc=$?
    if [ "$rc" -eq 77 ]; then
      echo "steer: $io skipped: $(grep skipped "$log" | head -n 1)"
      rm -f "$log"
      continue
    fi
    result=$(sed -n 's/.*; \(successful=[0-9]* failed=[0-9]*\)$/\1/p' "$log" | tail -n 1)
    per_shard=$(sed -n 's/.*per_shard_received=\[\([0-9,]*\)\].*/\1/p' "$log" | tail -n 1)
    banner_steer=$(sed -n 's/.* steer=\([a-z-]*\),.*/\1/p' "$log" | head -n 1)
    ok=$(sed -n 's/.*successful=\([0-9]*\).*/\1/p' <<< "$result")
    bad=$(( calls - ${ok:-0} ))
    # A call can also fail to a datagram lost on the busy generator CPU:
    # SIPp's UAS cannot answer a retransmitted BYE once it has answered
    # the first (its 200 lost), so the UAC gives up on a retransmission
    # timeout. Those are counted apart; reordering shows otherwise
    # (unexpected messages).
    dir=$(sed -n 's/^interop: logs in //p' "$log" | tail -n 1)
    lost=0
    if [ -n "$dir" ] && [ -f "$dir/uac_errors.log" ]; then
      lost=$(grep -c "Aborting call on UDP retransmission timeout" "$dir/uac_errors.log" || true)
    fi
    [ "$lost" -gt "$bad" ] && lost=$bad
    rows+=("| $io | $steer | ${banner_steer:-?} | $bad | $lost | ${per_shard/,/ \/ } |")
    echo "steer: $io, --steer $steer (in force: ${banner_steer:-?}): $result ($lost of them to a lost datagram), per shard [$per_shard]"
    if [ "$steer" = call-id ]; then
      a=${per_shard%,*} b=${per_shard#*,}
      total=$(( ${a:-0} + ${b:-0} ))
      why=$(grep -m1 'call-id unavailable' "$log" || true)
      if [ "$banner_steer" != call-id ] && grep -qE "Operation not permitted|Function not implemented" <<< "$why"; then
        # bpf(2) refused by the environment (a container): nothing to test.
        echo "steer: $io: skipped: $why"
        skipped=1
      elif [ "$banner_steer" != call-id ]; then
        echo "steer: $io: call-id was not in force: $why" >&2
        failed=1
      elif [ $(( bad - lost )) -ne 0 ]; then
        echo "steer: $io: call-id failed $(( bad - lost )) of $calls calls otherwise than to a lost datagram; log: $log" >&2
        failed=1
      elif [ $(( 4 * ${a:-0} )) -lt "$total" ] || [ $(( 4 * ${b:-0} )) -lt "$total" ]; then
        echo "steer: $io: call-id left a shard under a quarter: [$per_shard]" >&2
        failed=1
      fi
    fi
    [ "$failed" -eq 0 ] && rm -f "$log"
  done
done

echo
echo "$calls calls at $rate/s, one SIPp UAC and one SIPp UAS, sipshard --shards 2 (nproc $(nproc), $(uname -r)):"
echo
echo "| backend | --steer | in force | calls failed | of which to a lost datagram | datagrams per shard |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
[ "$failed" -eq 0 ] && [ "$skipped" -eq 1 ] && exit 77
exit "$failed"
