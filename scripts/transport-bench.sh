#!/usr/bin/env bash
# What TCP, TLS and WebSocket cost, sipshard against Kamailio 5.6, the
# same loads in the same run (issue #14's benchmarks).
#
#   scripts/transport-bench.sh            the full run, about 25 minutes:
#                                         3 rounds; writes perf/transports/
#                                         (CSV, raw.log, the section; the
#                                         SVG plots and their inputs in
#                                         perf/transports/plots/) and
#                                         replaces the generated section of
#                                         perf/RESULTS.md
#   scripts/transport-bench.sh --quick    under two minutes: one round, one
#                                         rate, small counts, to
#                                         perf/results/transports-quick-<time>/
#                                         only (what .ci/run runs)
#   scripts/transport-bench.sh --help     every option (parts, rates,
#                                         rounds, targets, counts, --note)
#
# Parts, each alternating its targets within every round (a fresh target
# per step):
#   forwarding  `sipshard-load run --transport udp|tcp|tls|ws`: the
#               caller's leg on that transport, the sink (UAS) on UDP,
#               at the forwarding sweep's rates (10,000, 25,000, 50,000,
#               75,000 and 100,000 requests/s; a target that loses over 5%
#               at one is not offered the next), through sipshard
#               --shards 1 --io mmsg, sipshard --io uring and Kamailio:
#               CPU per forwarded message and the TCP/UDP, TLS/UDP, WS/UDP
#               and sipshard/Kamailio ratios;
#   handshakes  `sipshard-load handshakes`: full TLS 1.3 handshakes with an
#               ECDSA P-256 and an RSA-2048 certificate: CPU per
#               handshake, handshakes/s per core, against rustls's figures;
#   memory      `sipshard-load hold`: 10,000 and 50,000 idle TCP and TLS
#               connections (as many as the open-file limit allows),
#               bytes of PSS (and RSS) per connection.
# The work is done by scripts/compare/transports.py (with the comparison's
# procs.py and stats.py); plots by sipshard-plot (perf/plot): CPU per
# message by transport at one rate, memory per connection at one count. Targets are pinned to CPU 0, generators to the
# last CPU. Installs kamailio, kamailio-tls-modules,
# kamailio-websocket-modules and openssl from Debian when missing (no
# SIPp: the one here has neither TLS nor WebSocket). Certificates are made
# at run time by openssl in a temporary folder, removed at exit. Raises the
# open-file limit as far as it is allowed. Every process it starts is
# stopped by PID; everything goes to 127.0.0.1. Exits 1 when a target
# answered nothing at some step.
set -euo pipefail
cd "$(dirname "$0")/.."

# --help needs nothing installed or built.
for arg in "$@"; do
  case "$arg" in -h|--help) exec python3 scripts/compare/transports.py --help ;; esac
done

modules_dir() {
  dirname "$(dpkg -L kamailio 2>/dev/null | grep '/modules/sl.so$' | head -n 1)"
}
need=()
command -v kamailio >/dev/null || need+=(kamailio)
command -v openssl >/dev/null || need+=(openssl)
modules=$(modules_dir)
[ -f "$modules/tls.so" ] || need+=(kamailio-tls-modules)
[ -f "$modules/websocket.so" ] || need+=(kamailio-websocket-modules)
if [ "${#need[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get install -y "${need[@]}" || { $sudo apt-get update && $sudo apt-get install -y "${need[@]}"; }
  modules=$(modules_dir)
fi
[ -d "$modules" ] || modules=/usr/lib/x86_64-linux-gnu/kamailio/modules

echo "transport-bench: building sipshard, sipshard-load and sipshard-plot (release)" >&2
cargo build --release --quiet --bins
cargo build --release --quiet -p sipshard-plot

# Each held connection takes a descriptor in the target and one in the
# generator: raise the hard limit if allowed (root with CAP_SYS_RESOURCE),
# then the soft one to it. Children inherit it.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
fd_limit=$(ulimit -Sn)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
certs="$work/certs"
mkdir -p "$certs"
# A CA and a leaf for 127.0.0.1 (and localhost) per key type, valid two
# days; the keys never leave the temporary folder.
for key in ecdsa rsa; do
  if [ "$key" = ecdsa ]; then new=(-newkey ec -pkeyopt ec_paramgen_curve:P-256); else new=(-newkey rsa:2048); fi
  openssl req -x509 "${new[@]}" -nodes -days 2 -subj "/CN=sipshard bench CA $key" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$certs/ca-$key.key" -out "$certs/ca-$key.pem" 2>/dev/null
  openssl req "${new[@]}" -nodes -subj /CN=localhost \
    -keyout "$certs/key-$key.pem" -out "$certs/leaf-$key.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n' \
    > "$certs/leaf-$key.ext"
  openssl x509 -req -in "$certs/leaf-$key.csr" -CA "$certs/ca-$key.pem" -CAkey "$certs/ca-$key.key" \
    -CAcreateserial -days 2 -extfile "$certs/leaf-$key.ext" -out "$certs/cert-$key.pem" 2>/dev/null
  # Kamailio's tls module: this certificate for every TLS listener.
  cat > "$certs/tls-$key.cfg" <<CFG
[server:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
certificate = $certs/cert-$key.pem
private_key = $certs/key-$key.pem

[client:default]
method = TLSv1.2+
verify_certificate = no
require_certificate = no
CFG
done

# The command line the section quotes, an argument with spaces in quotes.
command="scripts/transport-bench.sh"
for arg in "$@"; do
  case $arg in
    *[!A-Za-z0-9_./:=,+-]* | '') command+=" '${arg//\'/\'\\\'\'}'" ;;
    *) command+=" $arg" ;;
  esac
done
python3 scripts/compare/transports.py --modules "$modules" --work "$work" --certs "$certs" \
  --fd-limit "$fd_limit" --command "$command" "$@"
