# The attack test's steps, in the order scripts/attack.sh runs them, and
# what they need. Each step records its checks with `check`; the globals
# are scripts/attack.sh's settings. Sourced by scripts/attack.sh.

# lost_bindings FIRST LAST SECONDS: asks the registrar (REGISTER without
# Contact, a query, from legit_ip at up to 200/s) for sip:N@domain, N from
# FIRST to LAST, each of which svwar registered; prints how many answers
# list no binding, how many never came (within SECONDS in all), and which
# (the first 20).
lost_bindings() {
  python3 scripts/attack/queries.py lost-bindings "$server_ip" "$server_port" "$legit_ip" "$domain" "$1" "$2" "$3"
}
# probe IP PORT: the status code of sipshard's answer to a REGISTER (a
# query for sip:probe@domain) sent from IP:PORT, or "none" after two tries
# of 2 s: whether that source is banned on the shard its flow lands on.
probe() { python3 scripts/attack/queries.py probe "$server_ip" "$server_port" "$1" "$2" "$domain"; }

# setup (step 0): the users' CSV files (and with ATTACK_AUTH=1 their
# credentials and svcrack's dictionaries), sipshard, and the phones (one
# SIPp UAS for both rounds of calls) in phones_pid.
setup() {
  if ! port_free "$server_ip" "$server_port"; then
    echo "attack: skipped: $server_ip:$server_port is in use (sipvicious names port 5060, so sipshard must listen there)"
    exit 77
  fi
  if [ "$auth" = 0 ]; then
    python3 scripts/make_users_csv.py "$users" "$tmp/users.csv"
    python3 scripts/make_users_csv.py "$new_users" "$tmp/new.csv" --prefix newuser
  else
    # Each CSV line gets SIPp's [authentication] keyword; the server's
    # --auth-file every user's HA1s: old, new, and crackme000001 (svcrack's
    # control), whose password is pw-crackme000001 as user000001's is
    # pw-user000001.
    python3 scripts/make_users_csv.py "$users" "$tmp/users.csv" --auth-file "$tmp/users.auth" --realm "$domain"
    python3 scripts/make_users_csv.py "$new_users" "$tmp/new.csv" --prefix newuser \
      --auth-file "$tmp/new.auth" --realm "$domain"
    python3 scripts/make_users_csv.py 1 "$tmp/crackme.csv" --prefix crackme --auth-file "$tmp/crackme.auth" --realm "$domain"
    cat "$tmp/new.auth" "$tmp/crackme.auth" >> "$tmp/users.auth"
    { head -n 1 "$tmp/users.csv"; grep "^$victim;" "$tmp/users.csv"; } > "$tmp/victim.csv"
    # svcrack's dictionaries (crack_words wrong passwords for the victim,
    # twice as many for the fast run, the control's ten and
    # crackme000001's) and svwar --force's names.
    python3 scripts/attack/words.py "$victim" "$crack_words" "$tmp" "$users"
  fi
  { cat "$tmp/users.csv"; tail -n +2 "$tmp/new.csv"; } > "$tmp/all.csv"

  mode=""
  [ "$auth" = 0 ] || mode=" (ATTACK_AUTH=1: digest authentication)"
  echo "attack: $seconds s per flood at $flood_rate/s, $users users$mode; sipshard ${common[*]} ${extra[*]}"
  echo "attack: server on CPUs ${server_cpus}, clients on CPUs ${client_cpus}; logs in $out"
  start_sipshard "$out/sipshard.log" "${common[@]}" "${extra[@]}"
  head -n 1 "$out/sipshard.log"

  # The legitimate users' phones: one SIPp UAS for both rounds of calls.
  phone_port=$(free_port "$phone_ip")
  timeout 1800 "${cli[@]}" sipp -sf perf/uas_registered.xml -i "$phone_ip" -p "$phone_port" \
    -m $(( 2 * total )) -nostdin -trace_err -error_file "$out/phones_errors.log" \
    -trace_stat -stf "$out/phones_stat.csv" > "$out/phones.log" 2>&1 &
  phones_pid=$!
  pids+=("$phones_pid")
  sleep 0.5
  kill -0 "$phones_pid" 2>/dev/null || { echo "attack: the SIPp UAS did not start:" >&2; tail -n 3 "$out/phones.log" >&2; exit 1; }
}

# register_users (step 1): the legitimate users register.
register_users() {
  check "$users users register before the attacks ($reg_rate/s)" legit_register register "$tmp/users.csv" "$users" "$reg_rate"
  echo "attack: register: $legit_result"
  snap "$tmp/registered.snap"
  check "the replica holds the $users AORs" [ "$(get "$tmp/registered.snap" aors)" -eq "$users" ]
  if [ "$auth" = 1 ]; then
    echo "attack: register: auth_challenges=$(get "$tmp/registered.snap" challenges)" \
      "auth_accepted=$(get "$tmp/registered.snap" auth_ok) auth_failures=$(get "$tmp/registered.snap" auth_failed)"
    check "every user was accepted through a 401 and its digest, with no auth failure" \
      [ "$(get "$tmp/registered.snap" auth_ok)" -ge "$users" -a "$(get "$tmp/registered.snap" challenges)" -ge "$users" \
      -a "$(get "$tmp/registered.snap" auth_failed)" -eq 0 ]
  fi
}

# scan (step 2): svmap, then svwar over USERS extensions.
scan() {
  scan_port=$(free_port "$scan_ip")
  # svwar sweeps USERS five-digit extensions, as a PBX numbers its phones.
  ext_first=10000
  ext_last=$(( ext_first + users - 1 ))

  for method in OPTIONS INVITE; do
    attack_begin
    timeout 60 "${cli[@]}" "$svmap" -b "$scan_ip" -P "$scan_port" -p "$server_port" -m "$method" "$server_ip" \
      > "$out/svmap-$method.log" 2>&1 || true
    attack_end "svmap -m $method" "found $(svmap_found "$out/svmap-$method.log") device(s)"
  done
  if [ -z "$scanners_dropped_anyway" ]; then
    check "svmap saw sipshard" [ "$(svmap_found "$out/svmap-OPTIONS.log")" -ge 1 ]
  fi

  # svwar runs bound to scan_ip (scripts/svbind.py: 0.3.3 ignores -b).
  svwar_bound=(python3 scripts/svbind.py "$scan_ip" "$svwar" -b "$scan_ip" -x "$scan_ip" -P "$scan_port")
  for method in OPTIONS INVITE REGISTER; do
    attack_begin
    timeout $(( users / 20 + 60 )) "${cli[@]}" "${svwar_bound[@]}" -p "$server_port" \
      --domain "$domain" -m "$method" -e "$ext_first-$ext_last" "$server_ip" > "$out/svwar-$method.log" 2>&1 || true
    attack_end "svwar -m $method -e $ext_first-$ext_last" "$(svwar_said "$out/svwar-$method.log")"
  done
}

# crack LOG LABEL IP LIMIT SVCRACK-ARGS...: svcrack from IP (a port of
# its own, in crack_port), as the table's row LABEL. Once it has stopped
# sending (out of passwords, or an answer it does not expect) it waits
# 10 s for late answers; on loopback 1 s is plenty, so it then gets
# SIGINT, on which it prints what it found and exits. So it does after
# LIMIT seconds in any case.
crack() {
  local log=$1 label=$2 ip=$3 limit=$4 pid i said
  shift 4
  crack_port=$(free_port "$ip")
  attack_begin
  "${cli[@]}" python3 scripts/svbind.py "$ip" "$svcrack" -v -b "$ip" -x "$ip" \
    -P "$crack_port" -p "$server_port" --domain "$domain" "$@" "$server_ip" > "$out/$log.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  said=""
  for i in $(seq $(( limit * 10 )) -1 0); do
    kill -0 "$pid" 2>/dev/null || break
    if grep -qE "no more passwords|We got an unknown response" "$out/$log.log"; then
      sleep 1
      break
    fi
    [ "$i" -gt 0 ] || said="; stopped at the time limit"
    sleep 0.1
  done
  kill -INT "$pid" 2>/dev/null || true
  wait_for "$pid" 10
  attack_end "$label" "$(svcrack_said "$out/$log.log")$said"
}

# crack_checks LOG NAME IP: svcrack found no password, each guess was an
# auth failure, no binding; a ban (if any) holds against its address and
# port (so on the shard it was banned on).
crack_checks() {
  local log=$1 name=$2 ip=$3 failed challenged banned answer
  failed=$(row_delta auth_failed)
  challenged=$(row_delta challenges)
  banned=$(row_delta banned)
  crack_failures=$(( crack_failures + failed ))
  echo "attack: $name: auth failures +$failed, challenges +$challenged, 2xx +$(row_delta 2xx)," \
    "503 +$(row_delta 5xx), rate-limited +$(row_delta rate_limited), sources banned +$banned"
  check "$name did not find $victim's password" \
    [ -z "$(svcrack_found "$out/$log.log")" -a -n "$(grep -l "found nothing" "$out/$log.log")" ]
  check "$name: its guesses were auth failures (+$failed, challenges +$challenged), no 2xx, no binding" \
    [ "$failed" -ge 1 -a "$challenged" -ge "$failed" -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]
  answer=$(probe "$ip" "$crack_port")
  if [ "$banned" -ge 1 ]; then
    check "$name went over the limit and was banned: $ip:$crack_port gets no answer now (got: $answer)" [ "$answer" = none ]
  else
    check "$name was not banned (rate-limited +$(row_delta rate_limited)): $ip:$crack_port still gets 401 (got: $answer)" \
      [ "$(row_delta rate_limited)" -eq 0 -a "$answer" = 401 ]
  fi
}

# guess_passwords (step 2, ATTACK_AUTH=1): svwar -m REGISTER gets 401 and
# finds nothing; svcrack's control finds a password in its dictionary;
# svcrack against a real user finds nothing, and its bans hold.
guess_passwords() {
  check "svwar -m REGISTER found nothing and registered nothing (2xx: $(row_delta 2xx), bindings: $(row_delta created))" \
    [ "$(svwar_found "$out/svwar-REGISTER.log")" -eq 0 -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]
  attack_begin
  timeout $(( users / 20 + 60 )) "${cli[@]}" "${svwar_bound[@]}" -p "$server_port" \
    --domain "$domain" -m REGISTER --force -d "$tmp/names.txt" "$server_ip" > "$out/svwar-force.log" 2>&1 || true
  attack_end "svwar -m REGISTER --force, real+fake" "$(svwar_said "$out/svwar-force.log")"
  check "svwar -m REGISTER --force over real and made-up names found nothing and registered nothing (2xx: $(row_delta 2xx), bindings: $(row_delta created))" \
    [ "$(svwar_found "$out/svwar-force.log")" -eq 0 -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]

  crack_failures=0
  # The control: crackme000001's password is the last of 11 guesses.
  crack svcrack-control "svcrack -u crackme000001 (control)" "$crack_control_ip" 60 \
    -u crackme000001 -d "$tmp/control.txt"
  crack_failures=$(( crack_failures + $(row_delta auth_failed) ))
  check "svcrack finds a password that is in its dictionary (control: crackme000001, 1 binding)" \
    [ "$(svcrack_found "$out/svcrack-control.log")" = crackme000001=pw-crackme000001 -a "$(row_delta created)" -eq 1 ]
  # The same 11 guesses as crackme000001 for the victim's AOR (To): the
  # right one is another user's credentials, 403, and svcrack goes on.
  crack svcrack-other "svcrack -u crackme000001 -e $victim" "$crack_control_ip" 60 \
    -u crackme000001 -e "$victim" -d "$tmp/control.txt"
  crack_failures=$(( crack_failures + $(row_delta auth_failed) ))
  echo "attack: svcrack -e $victim: auth failures +$(row_delta auth_failed), challenges +$(row_delta challenges)"
  check "crackme000001's own credentials do not register $victim (11 failures, 403 for the right one: 2xx +$(row_delta 2xx), bindings +$(row_delta created))" \
    [ -z "$(svcrack_found "$out/svcrack-other.log")" -a "$(row_delta auth_failed)" -ge 11 \
    -a "$(row_delta 2xx)" -eq 0 -a "$(row_delta created)" -eq 0 ]
  crack svcrack "svcrack -u $victim, $crack_words words" "$crack_ip" 150 -u "$victim" -d "$tmp/words.txt"
  crack_checks svcrack "svcrack at its own pace" "$crack_ip"
  # As fast as it goes, with twice the words: over the burst, if fast enough.
  crack svcrack-fast "svcrack -t 0 -u $victim, $(( 2 * crack_words )) words" "$crack_fast_ip" 150 \
    -u "$victim" -d "$tmp/words-fast.txt" -t 0
  crack_checks svcrack-fast "svcrack -t 0" "$crack_fast_ip"
  check "$victim registers right after the password guessing" legit_register victim "$tmp/victim.csv" 1 1
}

# flood NAME COMMAND...: runs the flood (under `timeout`) while every
# legitimate user registers again, spread over the flood.
flood() {
  local name=$1 legit_pid
  shift
  attack_begin
  legit_register "refresh-$name" "$tmp/users.csv" "$users" $(( (users + seconds - 1) / seconds )) \
    > /dev/null 2>&1 &
  legit_pid=$!
  pids+=("$legit_pid")
  timeout $(( seconds + 30 )) "${cli[@]}" "$@" > "$out/$name.log" 2>&1 || true
  wait_for "$legit_pid"
  local said
  case "$name" in
    botnet) said=$(grep "^flood:" "$out/$name.log" | sed 's/^flood: //' || true) ;;
    *) said="sent $(sipp_stats "$out/${name}_stat.csv" created | sed 's/.*created=//')" ;;
  esac
  attack_end "$name flood" "${said:-no report}"
  check "every legitimate REGISTER during the $name flood got its 200" [ "$waited_rc" = 0 ]
  if [ "$auth" = 1 ]; then
    check "the $name flood created no binding (401 or rate-limited; bindings: $(row_delta created))" \
      [ "$(row_delta created)" -eq 0 ]
  fi
  echo "attack: legitimate REGISTERs during the $name flood: $(sipp_stats "$out/refresh-${name}_stat.csv" created)"
}

# floods (step 2): INVITE, REGISTER and botnet floods.
floods() {
  count=$(( flood_rate * seconds ))
  flood invite sipp -sf perf/attack_invite_flood.xml -t un -max_socket 4096 \
    -i "$invite_ip" -p "$(free_port "$invite_ip")" -key domain "$domain" -r "$flood_rate" -m "$count" \
    -timeout "$(( seconds + 10 ))s" -nostdin -trace_stat -stf "$out/invite_stat.csv" "$server_ip:$server_port"
  flood register sipp -sf perf/attack_register_flood.xml -t un -max_socket 4096 \
    -i "$register_ip" -p "$(free_port "$register_ip")" -key domain "$domain" -r "$flood_rate" -m "$count" \
    -timeout "$(( seconds + 10 ))s" -nostdin -trace_stat -stf "$out/register_stat.csv" "$server_ip:$server_port"
  flood botnet "$load" flood --target "$server_ip:$server_port" --domain "$domain" \
    --sources "$bot_first" --source-count "$bot_count" --sockets 4 --rate "$flood_rate" --duration "$seconds"
}

# after_attacks (step 3): the server still runs, new users register, every
# user is called, no binding was lost; it exits 0.
after_attacks() {
  check "sipshard is still running after the attacks" kill -0 "$sipshard_pid"
  check "$new_users new users register after the attacks" legit_register register-new "$tmp/new.csv" "$new_users" "$reg_rate"
  echo "attack: new registrations: $legit_result"
  check "all $total users (old and new) are called through the location service" legit_calls calls
  echo "attack: calls: $legit_result"
  snap "$tmp/end.snap"
  if [ "$auth" = 0 ]; then
    svwar_bindings=$(lost_bindings "$ext_first" "$ext_last" $(( users / 50 + 60 )) || true)
    echo "attack: the bindings svwar's REGISTERs created, queried: $svwar_bindings"
    check "every binding svwar registered is still there" [ "${svwar_bindings%% of=*}" = "lost=0 unanswered=0" ]
  else
    # svwar registered nothing here: the only bindings are the users' and
    # the one svcrack's control made for crackme000001.
    legit_bindings=$(( total + 1 ))
    check "no attacker made a binding: bindings created = the legitimate ones (created=$(get "$tmp/end.snap" created) of $legit_bindings)" \
      [ "$(get "$tmp/end.snap" created)" -eq "$legit_bindings" ]
    check "every auth failure was one of svcrack's guesses (auth failures=$(get "$tmp/end.snap" auth_failed), svcrack's=$crack_failures)" \
      [ "$(get "$tmp/end.snap" auth_failed)" -eq "$crack_failures" ]
  fi
  check "no binding was removed or expired" [ "$(get "$tmp/end.snap" removed)" -eq 0 -a "$(get "$tmp/end.snap" expired)" -eq 0 ]
  # Every REGISTER sent here, legitimate or not, has one Contact and its own
  # AOR (refreshes count as refreshed, not created), so the AORs the server
  # answered 200 for are bindings created - removed - expired, and every one
  # of them must be in the replica: a binding acknowledged and then lost
  # (overwritten, dropped) fails this even when no legitimate user was hit.
  acked=$(( $(get "$tmp/end.snap" created) - $(get "$tmp/end.snap" removed) - $(get "$tmp/end.snap" expired) ))
  aors_end=$(get "$tmp/end.snap" aors)
  check "every AOR the server acknowledged is in its replica (aors=$aors_end of $acked)" [ "$aors_end" -eq "$acked" ]
  check "no REGISTER refused and no log error" [ "$(get "$tmp/end.snap" refused)" -eq 0 -a "$(get "$tmp/end.snap" store_errors)" -eq 0 ]
  stop_sipshard "$out/sipshard.log"
  exit1=$exit_line
  check "sipshard exits 0 on SIGTERM" [ "$sipshard_rc" = 0 ]
}

# restart (step 4): from the state directory with --drop-scanners: every
# AOR loaded, the scanners get nothing, every user is called again.
restart() {
  local flags=("${common[@]}")
  [ -n "$scanners_dropped_anyway" ] || flags+=(--drop-scanners)
  start_sipshard "$out/sipshard-restart.log" "${flags[@]}" "${extra[@]}"
  loaded=$(sed -n 's/.*loaded \([0-9]*\) AOR(s).*/\1/p' "$out/sipshard-restart.log" | head -n 1)
  echo "attack: restart: $(grep "loaded" "$out/sipshard-restart.log" | head -n 1)"
  check "the restarted server loads every acknowledged AOR from --state-dir (loaded=${loaded:-?} of $acked)" [ "${loaded:-x}" = "$acked" ]

  snap "$tmp/drop-before.snap"
  attack_begin
  timeout 60 "${cli[@]}" "$svmap" -b "$scan_ip" -P "$scan_port" -p "$server_port" "$server_ip" \
    > "$out/svmap-drop.log" 2>&1 || true
  attack_end "svmap, --drop-scanners" "found $(svmap_found "$out/svmap-drop.log") device(s)"
  check "with --drop-scanners svmap finds nothing" [ "$(svmap_found "$out/svmap-drop.log")" -eq 0 ]
  attack_begin
  timeout $(( users / 20 + 60 )) "${cli[@]}" "${svwar_bound[@]}" -p "$server_port" \
    --domain "$domain" -m INVITE -e "$ext_first-$ext_last" "$server_ip" > "$out/svwar-drop.log" 2>&1 || true
  attack_end "svwar -m INVITE, --drop-scanners" "$(svwar_said "$out/svwar-drop.log")"
  snap "$tmp/drop-after.snap"
  # delta KEY: how much a counter grew while the scanners ran against --drop-scanners.
  delta() { echo $(( $(get "$tmp/drop-after.snap" "$1") - $(get "$tmp/drop-before.snap" "$1") )); }
  check "with --drop-scanners every scanner request was dropped (scanner drops: $(delta scanner)) and none answered" \
    [ "$(delta scanner)" -ge 1 -a "$(( $(delta 2xx) + $(delta 4xx) + $(delta 5xx) ))" -eq 0 ]

  check "after the restart all $total users are called again" legit_calls calls-restart
  echo "attack: calls after restart: $legit_result"
  snap "$tmp/restart-end.snap"
  aors_restart=$(get "$tmp/restart-end.snap" aors)
  check "after the restart the replica holds every acknowledged AOR (aors=$aors_restart of $acked)" [ "$aors_restart" -eq "$acked" ]
  wait_for "$phones_pid" 10
  check "the phones (SIPp UAS) took every call" [ "$waited_rc" = 0 ]
  stop_sipshard "$out/sipshard-restart.log"
  exit2=$exit_line
  check "the restarted sipshard exits 0 on SIGTERM" [ "$sipshard_rc" = 0 ]
}

# summary: the table, the exit lines, PASS or FAIL (exit 1).
summary() {
  echo
  echo "attack: what sipshard did, per attack (counter deltas from /metrics; a flood's row includes"
  if [ "$auth" = 0 ]; then
    echo "attack: the legitimate REGISTERs sent during it, one 2xx each):"
  else
    echo "attack: the legitimate REGISTERs sent during it, one 401 and one 2xx each; chal = 401s sent):"
  fi
  summary_table
  echo "attack: exit line, attacked server: ${exit1#*stopped; }"
  echo "attack: exit line, restarted server: ${exit2#*stopped; }"
  if [ "${#failures[@]}" -ne 0 ]; then
    echo "attack: FAIL (${#failures[@]} check(s) failed; logs in $out):" >&2
    printf 'attack:   %s\n' "${failures[@]}" >&2
    exit 1
  fi
  echo "attack: PASS (logs in $out)"
}
