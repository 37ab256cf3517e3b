# The attack test's tools: installing sipvicious and SIPp when missing,
# and reading what they printed. Sourced by scripts/attack.sh.

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
apt_install() {
  as_root apt-get install -y "$@" || { as_root apt-get update && as_root apt-get install -y "$@"; }
}
# Debian's sipvicious 0.3.3 installs svmap/svwar/svcrack; PyPI's 0.3.8
# installs sipvicious_svmap/... Both take the options used here (-b bind
# address, -x address for Via, -P local port, -p port, -m method, -e
# extensions, --domain, svcrack's -u, -d and -t). 0.3.3's svwar and svcrack
# ignore -b (they bind 0.0.0.0): scripts/svbind.py runs them bound to
# their own loopback address.
find_sipvicious() {
  svmap=$(command -v sipvicious_svmap || command -v svmap || true)
  svwar=$(command -v sipvicious_svwar || command -v svwar || true)
  svcrack=$(command -v sipvicious_svcrack || command -v svcrack || true)
  [ -n "$svmap" ] && [ -n "$svwar" ] && { [ "$auth" = 0 ] || [ -n "$svcrack" ]; }
}

# install_tools: sipvicious (svcrack only with ATTACK_AUTH=1) and SIPp,
# from Debian (sipvicious else PyPI); exits 2 when one cannot be had.
install_tools() {
  if ! find_sipvicious; then
    echo "attack: installing sipvicious"
    apt_install sipvicious || pip install sipvicious || pip3 install sipvicious || true
    find_sipvicious || { echo "attack: sipvicious (svmap, svwar, svcrack) not found and could not be installed" >&2; exit 2; }
  fi
  if ! command -v sipp >/dev/null; then
    echo "attack: installing SIPp (sip-tester)"
    apt_install sip-tester || true
    command -v sipp >/dev/null || { echo "attack: sipp not found: apt-get install -y sip-tester" >&2; exit 2; }
  fi
}

# svmap_found LOG: how many SIP devices svmap listed.
svmap_found() { grep -c "^| $server_ip:$server_port" "$1" || true; }
# svwar_found LOG: how many extensions svwar listed.
svwar_found() { grep -cE "^\| [^ ]+ +\| (reqauth|noauth|weird)" "$1" || true; }
# svwar_said LOG: what svwar found, and why it stopped when it gave up on
# 401s (ATTACK_AUTH=1).
svwar_said() {
  local said
  said="found $(svwar_found "$1") extension(s)"
  if grep -q "authentication request for an unknown extension" "$1"; then
    said="$said; gave up: a random extension got 401 too"
  elif grep -q "svwar will probably not work" "$1" && grep -q "unknown response" "$1"; then
    said="$said; --force: 401 for a random name too, stopped at the next 401"
  fi
  echo "$said"
}
# svcrack_found LOG: the passwords svcrack printed, as USER=PASSWORD.
svcrack_found() { awk '/^\+=/ { t = 1; next } t && /^\| / { print $2 "=" $4 }' "$1"; }
svcrack_said() {
  local found said
  found=$(svcrack_found "$1" | tr '\n' ' ')
  found=${found% }
  said="found ${found:-no password}"
  grep -q "We got an unknown response" "$1" && said="$said; stopped at an answer it did not expect"
  grep -q "since we last received a response" "$1" && said="$said; stopped: no answer"
  echo "$said"
}
