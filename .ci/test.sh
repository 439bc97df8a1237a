#!/usr/bin/env bash
# The test command (README): installs what the tests need, starts the real servers, runs pytest, stops the servers.
# Works on a fresh Debian 12 machine as root; idempotent on a developer's machine.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages: the GStreamer RTSP camera and ffmpeg (fixtures), chromium and its driver (the console's
# browser test). Installed only when one is missing.
missing=()
for pkg in $(cat .ci/apt-packages.txt); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "run as root, or install: ${missing[*]}" >&2; exit 1; }
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench]'
export PYTHON="$PWD/.venv/bin/python"
bash .ci/servers.sh install
bash .ci/servers.sh start
trap 'bash .ci/servers.sh stop' EXIT

.venv/bin/python -m pytest -q -p no:cacheprovider --durations=15 "$@"
