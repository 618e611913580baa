#!/usr/bin/env bash
# A standalone Flink cluster on loopback for Beam's portable runner, as in deploy/README.md section 2:
# a JobManager and a TaskManager, the Beam Flink job server against them, and a Python SDK worker pool.
#
#   deploy/flink/local-cluster.sh up     fetch what is missing into .cache/flink/, start everything, wait until ready
#   deploy/flink/local-cluster.sh down   stop everything `up` started (also run by `up` when it fails)
#
# Settings (environment): FLINK_SLOTS (TaskManager slots and default parallelism, 2), FLINK_REST_PORT (8081),
# FLINK_RPC_PORT (6123), BEAM_JOB_PORT (8099), BEAM_ARTIFACT_PORT (8098), BEAM_EXPANSION_PORT (8097),
# BEAM_WORKER_POOL_PORT (50000), FLINK_CACHE (.cache/flink under the repository), BASE_VENV (.venv: the
# project's environment, `pip install -e '.[test]'`).
#
# Versions: Maven Central, as reachable here, serves no beam-runners-flink-*-job-server jar at any
# version; the newest Flink runner whose dependencies all resolve is beam-runners-flink-1.19 2.62.0.
# Its FlinkJobServerDriver, on the classpath Maven resolves, is the job server that jar bundles.
# Beam supports only equal SDK and job server versions, so jobs are submitted from a Python
# environment with apache-beam 2.62.0 (the worker pool runs in the same one).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE=${FLINK_CACHE:-$ROOT/.cache/flink}
BEAM_VERSION=2.62.0
FLINK_RUNNER=beam-runners-flink-1.19
FLINK_VERSION=1.19.3
SLF4J_VERSION=1.7.30 # the slf4j-api the runner resolves to; the binding makes the job server log

JOB_SERVER=$CACHE/job-server-$BEAM_VERSION
FLINK_HOME=$CACHE/flink-$FLINK_VERSION
VENV=$CACHE/venv-beam-$BEAM_VERSION
BASE_VENV=${BASE_VENV:-$ROOT/.venv}
STATE=$CACHE/run

SLOTS=${FLINK_SLOTS:-2}
REST_PORT=${FLINK_REST_PORT:-8081}
RPC_PORT=${FLINK_RPC_PORT:-6123}
JOB_PORT=${BEAM_JOB_PORT:-8099}
ARTIFACT_PORT=${BEAM_ARTIFACT_PORT:-8098}
EXPANSION_PORT=${BEAM_EXPANSION_PORT:-8097}
POOL_PORT=${BEAM_WORKER_POOL_PORT:-50000}

log() { echo "local-cluster: $*" >&2; }

fetch_job_server() {
  [[ -f $JOB_SERVER/DONE ]] && return
  log "resolving $FLINK_RUNNER $BEAM_VERSION and its dependencies with Maven"
  mkdir -p "$JOB_SERVER"
  cat >"$JOB_SERVER/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>beam-flink-job-server</artifactId><version>$BEAM_VERSION</version>
  <dependencies>
    <dependency><groupId>org.apache.beam</groupId><artifactId>$FLINK_RUNNER</artifactId><version>$BEAM_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-jdk14</artifactId><version>$SLF4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  mvn -B -q -f "$JOB_SERVER/pom.xml" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$JOB_SERVER/lib"
  touch "$JOB_SERVER/DONE"
}

# The Flink distribution ships in PyFlink's packages: lib/, opt/ and plugins/ in apache-flink-libraries,
# bin/ and conf/ in apache-flink. Only their files are used; PyFlink itself is not installed.
fetch_flink() {
  [[ -f $FLINK_HOME/DONE ]] && return
  log "fetching Flink $FLINK_VERSION from PyFlink's packages"
  local downloads=$CACHE/downloads
  python3 -m pip download --quiet --no-deps --dest "$downloads" \
    "apache-flink==$FLINK_VERSION" "apache-flink-libraries==$FLINK_VERSION"
  rm -rf "$FLINK_HOME" && mkdir -p "$FLINK_HOME"
  python3 - "$downloads" "$FLINK_VERSION" "$FLINK_HOME" <<'EOF'
import glob, os, sys, tarfile, zipfile
downloads, version, home = sys.argv[1:]
with tarfile.open(f"{downloads}/apache-flink-libraries-{version}.tar.gz") as sdist:
    prefix = f"apache-flink-libraries-{version}/deps/"
    for member in sdist.getmembers():
        if member.name.startswith(prefix) and member.isfile():
            member.name = member.name[len(prefix):]
            sdist.extract(member, home, filter="data")
(wheel,) = glob.glob(f"{downloads}/apache_flink-{version}-*.whl")
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(("pyflink/bin/", "pyflink/conf/")) and not name.endswith("/"):
            target = os.path.join(home, name.removeprefix("pyflink/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as out:
                out.write(archive.read(name))
            os.chmod(target, 0o755 if "/bin/" in name else 0o644)
EOF
  touch "$FLINK_HOME/DONE"
}

# apache-beam at the job server's version, over the project's environment: the base environment's
# site-packages (BASE_VENV, default .venv, as .ci/run builds it) comes after this one's on the path, so
# torch and the other heavy packages are not installed twice, and what is installed here (apache-beam
# and the versions it pins) takes precedence.
make_venv() {
  [[ -f $VENV/DONE ]] && return
  log "creating $VENV (apache-beam $BEAM_VERSION over $BASE_VENV)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  local purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])'
  "$BASE_VENV/bin/python" -c "$purelib" >"$("$VENV/bin/python" -c "$purelib")/base-environment.pth"
  "$VENV/bin/pip" install --quiet "apache-beam==$BEAM_VERSION"
  "$VENV/bin/pip" install --quiet --no-deps -e "$ROOT"
  touch "$VENV/DONE"
}

write_config() {
  mkdir -p "$STATE/conf" "$STATE/log"
  cp "$FLINK_HOME"/conf/log4j*.properties "$STATE/conf/"
  # Java 17 needs the module openings the shipped configuration lists.
  local java_opts
  java_opts=$(sed -n 's/^ *all: \(--add-.*\)$/\1/p' "$FLINK_HOME/conf/config.yaml")
  cat >"$STATE/conf/config.yaml" <<EOF
env.java.opts.all: $java_opts
jobmanager.bind-host: 127.0.0.1
jobmanager.rpc.address: 127.0.0.1
jobmanager.rpc.port: $RPC_PORT
jobmanager.memory.process.size: 1024m
taskmanager.bind-host: 127.0.0.1
taskmanager.host: 127.0.0.1
taskmanager.numberOfTaskSlots: $SLOTS
taskmanager.memory.process.size: 2048m
# select's job runs many tasks at once; the default share (about 160 MB) ran out of network buffers.
taskmanager.memory.network.fraction: 0.25
taskmanager.memory.network.max: 512mb
parallelism.default: $SLOTS
rest.address: 127.0.0.1
rest.bind-address: 127.0.0.1
rest.port: $REST_PORT
EOF
}

flink() { FLINK_CONF_DIR=$STATE/conf FLINK_LOG_DIR=$STATE/log FLINK_PID_DIR=$STATE "$FLINK_HOME/bin/$1" "${@:2}"; }

# Starts a command in its own session (process group), so that `down` stops it with every worker it started.
start_daemon() {
  local name=$1
  shift
  # The pid is written from inside the new session: setsid forks when its caller leads a process group.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$STATE/$name.pid" "$@" >"$STATE/log/$name.log" 2>&1 </dev/null &
}

wait_for() {
  local what=$1 check=$2
  for _ in $(seq 120); do
    if eval "$check"; then return; fi
    sleep 1
  done
  log "$what did not come up within 2 minutes; logs in $STATE/log"
  return 1
}

listening() { python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 1).close()" "$1" 2>/dev/null; }

taskmanager_registered() {
  python3 - "$REST_PORT" <<'EOF' 2>/dev/null
import json, sys, urllib.request
overview = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/overview", timeout=2))
sys.exit(0 if overview["taskmanagers"] >= 1 else 1)
EOF
}

up() {
  down 2>/dev/null # a cluster left from an interrupted run
  trap 'status=$?; if ((status)); then log "up failed; stopping what started"; down; fi' EXIT
  fetch_job_server
  fetch_flink
  make_venv
  write_config
  flink jobmanager.sh start >/dev/null
  flink taskmanager.sh start >/dev/null
  start_daemon job-server java -cp "$JOB_SERVER/lib/*" org.apache.beam.runners.flink.FlinkJobServerDriver \
    --flink-master="127.0.0.1:$REST_PORT" --job-host=127.0.0.1 \
    --job-port="$JOB_PORT" --artifact-port="$ARTIFACT_PORT" --expansion-port="$EXPANSION_PORT"
  # The pool starts each SDK worker as `python`: this environment's must come first on PATH.
  start_daemon worker-pool env PATH="$VENV/bin:$PATH" "$VENV/bin/python" \
    -m apache_beam.runners.worker.worker_pool_main --service_port="$POOL_PORT"
  wait_for "the Flink TaskManager" taskmanager_registered
  wait_for "the Beam job server" "listening $JOB_PORT && listening $ARTIFACT_PORT"
  wait_for "the worker pool" "listening $POOL_PORT"
  trap - EXIT
  log "ready: Flink UI http://127.0.0.1:$REST_PORT; submit with $VENV/bin/mosaic-it ... --runner=PortableRunner" \
    "--job_endpoint=127.0.0.1:$JOB_PORT --artifact_endpoint=127.0.0.1:$ARTIFACT_PORT --environment_type=EXTERNAL" \
    "--environment_config=127.0.0.1:$POOL_PORT --parallelism=$SLOTS --sdk_worker_parallelism=1 --output_executable_path="
}

# Stops the process group led by the pid in $STATE/NAME.pid: TERM, then KILL after 10 s.
stop_group() {
  local file=$STATE/$1.pid pid
  [[ -f $file ]] || return 0
  pid=$(<"$file")
  if kill -TERM -- "-$pid" 2>/dev/null; then
    for _ in $(seq 20); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# Flink's scripts stop their daemons by the pid files in FLINK_PID_DIR; any daemon still alive after them is killed.
stop_flink() {
  [[ -d $FLINK_HOME/bin && -d $STATE/conf ]] || return 0
  flink taskmanager.sh stop >/dev/null 2>&1 || true
  flink jobmanager.sh stop >/dev/null 2>&1 || true
  local file pid
  for file in "$STATE"/flink-*.pid; do
    [[ -f $file ]] || continue
    for pid in $(<"$file"); do
      for _ in $(seq 20); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
      done
      kill -KILL "$pid" 2>/dev/null || true
    done
    rm -f "$file"
  done
}

down() {
  stop_group worker-pool
  stop_group job-server
  stop_flink
}

case ${1:-} in
  up) up ;;
  down) down ;;
  *)
    echo "usage: $0 up|down" >&2
    exit 2
    ;;
esac
