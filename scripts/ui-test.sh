#!/usr/bin/env bash
# Dashboard browser test: starts a real 3-node cluster with the `troupe` binary the cargo tests
# built, opens /ui in headless Chromium through Selenium, checks that the page shows 3 nodes and
# 64+ shards with every node's own request rates, SIGKILLs one node and waits until the page shows
# it dead, and saves screenshots (healthy, shards moving when caught, one node dead) under
# target/ui-artifacts/. Installs chromium and chromium-driver (apt-get) and selenium (pip) when
# missing; prints a SKIPPED line and exits 0 only when no browser can be installed.
#
#   scripts/ui-test.sh        # honours CARGO_TARGET_DIR; UI_ARTIFACTS=dir to save elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."

target_dir="${CARGO_TARGET_DIR:-target}"
binary="$target_dir/debug/troupe"
artifacts="${UI_ARTIFACTS:-target/ui-artifacts}"
python=python3

skip() { echo "SKIPPED: dashboard browser test ($1)"; exit 0; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo -n "$@"
  else return 1
  fi
}

find_browser() {
  local name
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return 0; fi
  done
  return 1
}

find_driver() {
  if command -v chromedriver >/dev/null 2>&1; then command -v chromedriver; return 0; fi
  if [ -x /usr/lib/chromium/chromedriver ]; then echo /usr/lib/chromium/chromedriver; return 0; fi
  return 1
}

if ! find_browser >/dev/null || ! find_driver >/dev/null; then
  echo "== installing chromium and chromium-driver with apt-get"
  if ! command -v apt-get >/dev/null 2>&1; then
    skip "no chromium and no apt-get to install it"
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() {
    as_root apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=600 \
      chromium chromium-driver >/dev/null
  }
  if ! apt_install; then
    as_root apt-get update -q -o DPkg::Lock::Timeout=600 >/dev/null 2>&1 || true
    apt_install || skip "apt-get cannot install chromium chromium-driver (no root or sudo, or no package source)"
  fi
fi
browser=$(find_browser) || skip "chromium is still not installed"
driver=$(find_driver) || skip "chromedriver is still not installed"

if ! "$python" -c 'import selenium' 2>/dev/null; then
  echo "== installing selenium with pip"
  if ! "$python" -m pip install -q selenium 2>/dev/null \
      && ! "$python" -m pip install -q --break-system-packages selenium 2>/dev/null; then
    # A Debian system Python without pip: a virtual environment of our own.
    venv="$target_dir/ui-venv"
    if "$python" -m venv "$venv" >/dev/null 2>&1 && "$venv/bin/pip" install -q selenium; then
      python="$venv/bin/python"
    else
      skip "cannot install selenium from PyPI, so nothing can drive the browser"
    fi
  fi
fi

if [ ! -x "$binary" ]; then
  echo "== building the troupe binary"
  cargo build -q -p troupe-node --bin troupe
fi

mkdir -p "$artifacts"
rm -f "$artifacts"/dashboard-*.png "$artifacts/cluster.pgid"
echo "== dashboard browser test: $("$browser" --version 2>/dev/null | head -1), selenium $("$python" -c 'import selenium; print(selenium.__version__)')"

# The Python side kills the cluster itself; this also covers it being killed before it could.
cleanup() {
  # The test and the browser it drives are one process group (setsid below).
  if [ -n "${py_pid:-}" ]; then
    kill -TERM -- "-$py_pid" 2>/dev/null || true
    wait "$py_pid" 2>/dev/null || true
    kill -KILL -- "-$py_pid" 2>/dev/null || true
  fi
  if [ -s "$artifacts/cluster.pgid" ]; then kill -KILL -- "-$(cat "$artifacts/cluster.pgid")" 2>/dev/null || true; fi
  rm -f "$artifacts/cluster.pgid"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

setsid "$python" scripts/ui_test.py "$binary" "$browser" "$driver" "$artifacts" &
py_pid=$!
status=0
wait "$py_pid" || status=$?
py_pid=
echo "== dashboard screenshots in $artifacts/: $(cd "$artifacts" && ls dashboard-*.png 2>/dev/null | tr '\n' ' ')"
exit "$status"
