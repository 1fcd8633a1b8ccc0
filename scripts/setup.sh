#!/usr/bin/env bash
# Install what building and testing xmppd needs beyond the Rust toolchain:
# clang/libclang (RocksDB's bindings), sccache (optional build cache),
# slixmpp (the real XMPP client the interop tests drive: the current one
# from PyPI and Debian's packaged one for the system interpreter), xmpp.js
# (a second client library, from npm, on Node.js), Chromium and
# Converse.js (a browser client, from npm), and Prosody with
# openssl (the load harness's MUC and PubSub smoke runs use a Prosody of
# their own on a loopback port; the distribution's service is not
# started), ejabberd and lua-unbound (the federation tests in
# tests/interop/s2s run Prosody and ejabberd as server-to-server peers on
# loopback addresses; Prosody needs lua-unbound to ask the tests' own DNS
# server; ejabberd's service is not started either), and schemathesis
# (PyPI) for the admin API's contract test. Idempotent: each package is
# installed only when missing.
set -euo pipefail

SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi

need_apt=()
# bindgen needs libclang itself (libclang.so or libclang-N.so), not just
# libclang-cpp, which some images carry without it.
# (Any one match will do: `ls` of the patterns fails when one matches
# nothing, which made every run reinstall them.)
have_libclang() {
  local f
  for f in /usr/lib/llvm-*/lib/libclang.so* /usr/lib/llvm-*/lib/libclang-[0-9]*.so* \
    /usr/lib/x86_64-linux-gnu/libclang.so* /usr/lib/x86_64-linux-gnu/libclang-[0-9]*.so*; do
    [ -e "$f" ] && return 0
  done
  return 1
}
if ! have_libclang || ! command -v clang >/dev/null 2>&1; then
  need_apt+=(libclang-dev clang)
fi
command -v sccache >/dev/null 2>&1 || need_apt+=(sccache)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
need_prosody=0
command -v prosody >/dev/null 2>&1 || need_prosody=1
# fail2ban-regex checks the log filter the README documents.
command -v fail2ban-regex >/dev/null 2>&1 || need_prosody=1

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing ${need_apt[*]}"
  $SUDO apt-get update -qq
  # sccache is optional: a mirror without it must not stop the build.
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libclang-dev clang >/dev/null
fi

# Servers installed for tests only: their packages must not start their
# system services.
need_servers=()
[ "$need_prosody" = 1 ] && need_servers+=(prosody fail2ban)
have_deb() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
have_deb lua-unbound || need_servers+=(lua-unbound)
command -v ejabberdctl >/dev/null 2>&1 || need_servers+=(ejabberd)
if [ ${#need_servers[@]} -gt 0 ]; then
  echo "setup: installing ${need_servers[*]} (their services are not started)"
  [ ${#need_apt[@]} -gt 0 ] || $SUDO apt-get update -qq
  # Keep the packages from starting their system services.
  policy=/usr/sbin/policy-rc.d
  made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod +x "$policy"
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_servers[@]}" >/dev/null
  if [ "$made_policy" = 1 ]; then $SUDO rm -f "$policy"; fi
fi
command -v ejabberdctl >/dev/null 2>&1 || { echo "setup: ejabberd is missing" >&2; exit 1; }
have_deb lua-unbound || { echo "setup: lua-unbound is missing" >&2; exit 1; }

if ! python3 -c 'import slixmpp' >/dev/null 2>&1; then
  echo "setup: installing slixmpp"
  python3 -m pip install -q slixmpp 2>/dev/null \
    || python3 -m pip install -q --break-system-packages slixmpp 2>/dev/null \
    || { $SUDO apt-get install -y -qq python3-slixmpp >/dev/null; }
fi
python3 -c 'import slixmpp' || { echo "setup: slixmpp is missing" >&2; exit 1; }

# The distribution's own slixmpp (1.8.3 on Debian 12) for the system
# interpreter: older clients are tested as users run them.
if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import slixmpp' >/dev/null 2>&1; then
  echo "setup: installing python3-slixmpp (Debian)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq python3-slixmpp >/dev/null
fi
/usr/bin/python3 -c 'import slixmpp' || { echo "setup: Debian's python3-slixmpp is missing" >&2; exit 1; }

# schemathesis checks the admin HTTP API against docs/openapi.json.
if ! command -v schemathesis >/dev/null 2>&1; then
  echo "setup: installing schemathesis"
  python3 -m pip install -q "schemathesis==4.32.5" 2>/dev/null \
    || python3 -m pip install -q --break-system-packages "schemathesis==4.32.5"
  hash -r
fi
command -v schemathesis >/dev/null 2>&1 || { echo "setup: schemathesis is missing from PATH" >&2; exit 1; }

# A second client library: xmpp.js (@xmpp/client from npm, pinned by its
# lock file) under tests/interop/xmppjs, on Node.js (Debian's will do).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "setup: installing nodejs and npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi
js=$(cd "$(dirname "$0")/.." && pwd)/tests/interop/xmppjs
if [ ! -d "$js/node_modules/@xmpp/client" ]; then
  echo "setup: installing xmpp.js (npm ci)"
  (cd "$js" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
[ -d "$js/node_modules/@xmpp/client" ] || { echo "setup: xmpp.js is missing" >&2; exit 1; }

# A real browser client: Converse.js in Debian's Chromium, headless,
# driven by puppeteer-core (npm, pinned by the lock file under
# tests/interop/conversejs; it downloads no browser). Cost on a fresh
# runner, once: chromium without recommends about 15 s (some 100 MB
# fetched), npm ci 20-30 s (Converse.js declares its build tools as
# dependencies: 364 packages, 220 MB). Later runs skip both; npm ci runs
# again only when package-lock.json changes.
if [ ! -x /usr/bin/chromium ]; then
  echo "setup: installing chromium"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
[ -x /usr/bin/chromium ] || { echo "setup: chromium is missing" >&2; exit 1; }
cjs=$(cd "$(dirname "$0")/.." && pwd)/tests/interop/conversejs
if ! cmp -s "$cjs/package-lock.json" "$cjs/node_modules/.setup-lock.json"; then
  echo "setup: installing Converse.js and puppeteer-core (npm ci)"
  # No install scripts: the dist bundle is used as shipped.
  (cd "$cjs" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null \
    && cp package-lock.json node_modules/.setup-lock.json)
fi
[ -d "$cjs/node_modules/converse.js/dist" ] || { echo "setup: Converse.js is missing" >&2; exit 1; }
echo "setup: ok"
