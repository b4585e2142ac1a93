#!/usr/bin/env bash
# Installs what Bando needs on a Debian machine: system packages, the Python package with its
# dev tools, and the Kafka broker's jars. CI runs it in every fresh clone, so it is idempotent
# and skips whatever is already in place: on a prepared machine it takes a few seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

source scripts/python.sh
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1
export DEBIAN_FRONTEND=noninteractive

say() { printf '[setup] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------------------------
# redis-server: board store and tests; chromium(+driver): display page tests; prometheus:
# promtool checks the alert rules; fonts: readable screenshots. Java and Maven run the broker.
# Recommended packages come too, as on the machines the project was developed on.
packages=(redis-server chromium chromium-driver prometheus fonts-dejavu-core poppler-utils)
command -v java >/dev/null 2>&1 || packages+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || packages+=(maven)
if [[ $PYTHON == "$PWD/.venv/bin/python" ]]; then packages+=(python3-venv); fi
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { say "need root to install: ${missing[*]}"; exit 1; }
    sudo=(sudo)
  fi
  # Packaged services (redis-server on 6379, prometheus on 9090) must not start on install:
  # bando.infra runs its own servers on free loopback ports.
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  say "installing Debian packages: ${missing[*]}"
  "${sudo[@]}" apt-get update -qq -o Acquire::Retries=3
  "${sudo[@]}" apt-get install -y -qq -o Acquire::Retries=3 \
    "${missing[@]}" >/dev/null
  # ... nor at the next boot: packaged prometheus and its node exporter listen on every
  # interface. Only services this script installed are disabled, never a user's own.
  services=()
  for pkg in "${missing[@]}"; do
    case $pkg in
      redis-server) services+=(redis-server) ;;
      prometheus) services+=(prometheus prometheus-node-exporter) ;;
    esac
  done
  if ((${#services[@]})) && command -v systemctl >/dev/null 2>&1; then
    for svc in "${services[@]}"; do
      "${sudo[@]}" systemctl disable "$svc" >/dev/null 2>&1 || true
    done
  fi
fi

# --- Python package --------------------------------------------------------------------------
if [[ $PYTHON == "$PWD/.venv/bin/python" && ! -x $PYTHON ]]; then
  say "python3 is the system's own (externally managed): installing into .venv"
  python3 -m venv .venv
fi
# Re-installed when pyproject.toml, the interpreter or the checkout's path changed (an
# editable install points at one checkout; CI's fresh clone is another one).
repo=$(pwd -P)
key=$( { cat pyproject.toml; echo "$repo"; command -v "$PYTHON"; "$PYTHON" -V; } \
       | sha256sum | cut -c1-16)
stamp="${XDG_CACHE_HOME:-$HOME/.cache}/bando/setup/pip-$key"
installed_here() {
  (cd / && "$PYTHON" - "$repo" <<'PY'
import os, sys
try:
    import bando
except ImportError:
    sys.exit(1)
root = os.path.dirname(os.path.dirname(os.path.realpath(bando.__file__)))
sys.exit(0 if root == sys.argv[1] else 1)
PY
  )
}
if [[ -f $stamp ]] && installed_here; then
  say "Python package already installed"
else
  say "installing the Python package and dev tools (pip install -e '.[dev]')"
  "$PYTHON" -m pip install -q -e '.[dev]'
  mkdir -p "$(dirname "$stamp")" && touch "$stamp"
fi

# --- Kafka broker jars -----------------------------------------------------------------------
"$PYTHON" -m bando.infra.kafka --fetch >/dev/null
say "ready"
