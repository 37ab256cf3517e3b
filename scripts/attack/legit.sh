# The legitimate user agents of the attack test: SIPp UACs from legit_ip.
# Sourced by scripts/attack.sh.

# sipp_uac NAME LIMIT SIPP-ARGS...: a SIPp UAC from legit_ip, at most LIMIT
# seconds, logs in $out/NAME*; sets uac_rc. Tries another port when the one
# chosen was taken meanwhile.
sipp_uac() {
  local name=$1 limit=$2 try port
  shift 2
  for try in 1 2 3; do
    port=$(free_port "$legit_ip")
    uac_rc=0
    timeout "$limit" "${cli[@]}" sipp "$@" -i "$legit_ip" -p "$port" -nostdin \
      -trace_err -error_file "$out/${name}_errors.log" -trace_stat -stf "$out/${name}_stat.csv" \
      > "$out/$name.log" 2>&1 || uac_rc=$?
    grep -q "Unable to bind" "$out/$name.log" || return 0
  done
}

# legit_register NAME CSV COUNT RATE: COUNT users of CSV register at RATE/s
# from legit_ip, Contact at the phones (with ATTACK_AUTH=1: 401, then the
# user's digest); true when each got its 200. SIPp's counts in legit_result.
legit_register() {
  local name=$1 csv=$2 count=$3 rate=$4
  local place=$(( (count + rate - 1) / rate ))
  sipp_uac "$name" $(( 2 * place + 60 )) -sf "$register_sf" -inf "$csv" \
    -key domain "$domain" -key contact "$phone_ip:$phone_port" \
    -m "$count" -r "$rate" -timeout "$(( 2 * place + 30 ))s" -timeout_error "$server_ip:$server_port"
  legit_result=$(sipp_stats "$out/${name}_stat.csv" created)
  [ "$uac_rc" = 0 ] && [[ "$legit_result" == "successful=$count failed=0 "* ]]
}

# legit_calls NAME: every user (old and new) is called at call_rate/s; true
# when every call completed. SIPp's counts in legit_result.
legit_calls() {
  local name=$1 place=$(( (total + call_rate - 1) / call_rate ))
  sipp_uac "$name" $(( 2 * place + 60 )) -sf perf/uac_call_registered.xml -inf "$tmp/all.csv" \
    -key domain "$domain" -m "$total" -r "$call_rate" \
    -timeout "$(( 2 * place + 30 ))s" -timeout_error "$server_ip:$server_port"
  legit_result=$(sipp_stats "$out/${name}_stat.csv" created)
  [ "$uac_rc" = 0 ] && [[ "$legit_result" == "successful=$total failed=0 "* ]]
}
