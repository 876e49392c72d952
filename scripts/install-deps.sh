#!/usr/bin/env bash
# Debian packages the tests, the demo and the benchmarks use. Installs only what is missing.
set -euo pipefail

# command -> Debian package
declare -A need=(
  [ip]=iproute2 [ping]=iputils-ping [udhcpc]=udhcpc [dhclient]=isc-dhcp-client [dhcpcd]=dhcpcd-base
  [dhcrelay]=isc-dhcp-relay [dig]=bind9-dnsutils [kdig]=knot-dnsutils [perfdhcp]=kea-admin
  [dnsmasq]=dnsmasq-base [promtool]=prometheus [systemd-analyze]=systemd [openssl]=openssl [logger]=bsdutils
  [curl]=curl [nginx]=nginx-light [wrk]=wrk  # HTTP file service tests (curl) and bench/http (nginx, wrk)
  [dnsperf]=dnsperf  # bench/dns and bench/mixed
  [tftp]=tftp-hpa [atftp]=atftp [busybox]=busybox [in.tftpd]=tftpd-hpa  # TFTP clients; bench/tftp's peer
  [chromium]=chromium  # the floor page in a real browser (tests)
  [strace]=strace  # a lease is on disk before its ACK leaves, seen at the system-call level (tests)
)
missing=()
for cmd in "${!need[@]}"; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# The PostgreSQL lease store's tests start a throwaway cluster with Debian's initdb/pg_ctl, which are not on
# PATH (/usr/lib/postgresql/<version>/bin); the package brings libpq5 too, which psycopg loads.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-deps: missing Debian packages: ${missing[*]} (run as root on Debian, or install them)" >&2
  echo "install-deps: tests that need them will be skipped" >&2
  exit 0
fi
echo "install-deps: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Packages such as prometheus and isc-dhcp-relay ship services: forbid starting any of them while we install
# (we want their tools, never a server on this machine's interfaces).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && created_policy=1
fi
trap '[ "$created_policy" = 1 ] && rm -f "$policy"' EXIT
apt-get update -qq
# --no-install-recommends: only what the tools themselves need.
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Distribution units must not start servers on this machine's real interfaces.
for unit in isc-dhcp-relay dnsmasq prometheus prometheus-node-exporter nginx tftpd-hpa postgresql; do
  systemctl disable --now "$unit" >/dev/null 2>&1 || true
done
