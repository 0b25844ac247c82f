#!/usr/bin/env bash
# scale/spark.sh BOOK.jsonl AS_OF
#
# Replays a book on a real standalone Spark cluster — one master and two workers on 127.0.0.1 —
# and checks the result equals a local `arrears replay`, row for row. Exit 0 only if equal.
#
#   1. installs what is missing (scale/install.sh): a Java 17 runtime (Debian's
#      openjdk-17-jre-headless) and a Python venv with pinned pyspark and pyarrow (PyPI), cached
#      under $ARREARS_SCALE_CACHE (default ~/.cache/arrears-scale);
#   2. appends the book to a fresh sled store, exports its events as Parquet
#      (`arrears export --events --format parquet`) and replays it locally (`arrears replay`);
#   3. starts the master and two workers (1 core each), waits until the master reports both
#      workers ALIVE, and submits scale/spark_replay.py with the arrears binary shipped in --files;
#   4. compares Spark's projections (sorted by loan_id) with the local replay byte for byte;
#   5. stops the cluster (also on any failure or interrupt) and removes its scratch directory.
#
# Environment: ARREARS_BIN (the binary; default target/release/arrears, built if missing),
# ARREARS_SCALE_CACHE, SPARK_WORKER_MEMORY (default 3g), SPARK_EXECUTOR_MEMORY (default 2g),
# ARREARS_SPARK_PARTITIONS (default 8), ARREARS_SPARK_JOBS (local replay threads, default 2),
# KEEP=1 keeps the scratch directory. Timings go to stderr and to $SCRATCH/timings.txt.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: scale/spark.sh BOOK.jsonl AS_OF" >&2
  exit 2
fi
BOOK=$(realpath "$1")
AS_OF=$2
[ -f "$BOOK" ] || { echo "spark.sh: $1: no such file" >&2; exit 2; }

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(dirname "$HERE")
WORKER_MEMORY=${SPARK_WORKER_MEMORY:-3g}
EXECUTOR_MEMORY=${SPARK_EXECUTOR_MEMORY:-2g}
PARTITIONS=${ARREARS_SPARK_PARTITIONS:-8}
LOCAL_JOBS=${ARREARS_SPARK_JOBS:-2}

log() { echo "spark.sh: $*" >&2; }

SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/arrears-spark.XXXXXX")
PIDS=()
stop_cluster() {
  local p
  for p in "${PIDS[@]}"; do
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do
      kill -0 "$p" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  PIDS=()
}
cleanup() {
  local code=$?
  stop_cluster
  if [ "$code" -ne 0 ] && [ -d "$SCRATCH/logs" ]; then
    for f in "$SCRATCH"/logs/*.log; do
      [ -f "$f" ] || continue
      echo "---- last lines of $(basename "$f")" >&2
      tail -n 30 "$f" >&2
    done
  fi
  if [ "${KEEP:-0}" = 1 ]; then
    log "scratch kept in $SCRATCH"
  else
    rm -rf "$SCRATCH"
  fi
  exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mkdir -p "$SCRATCH/logs"
TIMINGS=$SCRATCH/timings.txt
: >"$TIMINGS"
timed() { # timed NAME CMD… — runs CMD, records its wall time in seconds
  local name=$1 t0 ms
  shift
  t0=$(date +%s%N)
  "$@"
  ms=$((($(date +%s%N) - t0) / 1000000))
  printf '%s %d.%02d s\n' "$name" $((ms / 1000)) $((ms % 1000 / 10)) | tee -a "$TIMINGS" >&2
}

# ---- 1. install what is missing (scale/install.sh) --------------------------------------------
install() { VENV=$("$HERE/install.sh"); }
timed install install

export PATH=$VENV/bin:$PATH
export SPARK_HOME
SPARK_HOME=$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')
export PYSPARK_PYTHON=$VENV/bin/python PYSPARK_DRIVER_PYTHON=$VENV/bin/python
export SPARK_LOCAL_IP=127.0.0.1 SPARK_LOCAL_HOSTNAME=localhost
export SPARK_LOCAL_DIRS=$SCRATCH/spark-local SPARK_WORKER_DIR=$SCRATCH/spark-work
export SPARK_CONF_DIR=$SCRATCH/conf
mkdir -p "$SPARK_LOCAL_DIRS" "$SPARK_WORKER_DIR" "$SPARK_CONF_DIR"
# Quiet logs: warnings and errors only (the daemons' logs are printed if anything fails).
cat >"$SPARK_CONF_DIR/log4j2.properties" <<'EOF'
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss.SSS} %p %c{1}: %m%n
logger.master.name = org.apache.spark.deploy
logger.master.level = info
EOF

# ---- 2. the binary, the store, the events Parquet, the local replay --------------------------
ARREARS=${ARREARS_BIN:-$ROOT/target/release/arrears}
if [ ! -x "$ARREARS" ]; then
  log "building $ARREARS"
  (cd "$ROOT" && cargo build --release -p arrears-cli)
fi
ARREARS=$(realpath "$ARREARS")
STORE=$SCRATCH/store
timed append "$ARREARS" --store "$STORE" append "$BOOK" --quiet --batch 20000
timed export_events_parquet "$ARREARS" --store "$STORE" export --events --format parquet --out "$SCRATCH/events.parquet"
local_replay() {
  "$ARREARS" --store "$STORE" replay --as-of "$AS_OF" --jobs "$LOCAL_JOBS" --out "$SCRATCH/local.jsonl" 2>"$SCRATCH/logs/replay.log"
}
timed local_replay local_replay

# ---- 3. the cluster ------------------------------------------------------------------------
free_port() {
  "$VENV/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}
MASTER_PORT=$(free_port)
MASTER_UI=$(free_port)
MASTER=spark://127.0.0.1:$MASTER_PORT

# wait_for N_WORKERS: poll the master's JSON status until it is ALIVE with N workers ALIVE.
wait_for() {
  local want=$1 i
  for i in $(seq 1 240); do
    if "$VENV/bin/python" - "$MASTER_UI" "$want" <<'EOF' 2>/dev/null; then return 0; fi
import json, sys, urllib.request
status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/json/", timeout=2))
alive = sum(1 for w in status.get("workers", []) if w.get("state") == "ALIVE")
sys.exit(0 if status.get("status") == "ALIVE" and alive >= int(sys.argv[2]) else 1)
EOF
    for p in "${PIDS[@]}"; do
      kill -0 "$p" 2>/dev/null || { log "a Spark daemon died while starting"; return 1; }
    done
    sleep 0.5
  done
  log "the master did not report $want live workers within 120 s"
  return 1
}

start_cluster() {
  spark-class org.apache.spark.deploy.master.Master \
    --host 127.0.0.1 --port "$MASTER_PORT" --webui-port "$MASTER_UI" \
    >"$SCRATCH/logs/master.log" 2>&1 &
  PIDS+=($!)
  wait_for 0
  local w
  for w in 1 2; do
    spark-class org.apache.spark.deploy.worker.Worker \
      --host 127.0.0.1 --port "$(free_port)" --webui-port "$(free_port)" \
      --cores 1 --memory "$WORKER_MEMORY" --work-dir "$SPARK_WORKER_DIR/w$w" "$MASTER" \
      >"$SCRATCH/logs/worker$w.log" 2>&1 &
    PIDS+=($!)
  done
  wait_for 2
  log "cluster up: master $MASTER (UI http://127.0.0.1:$MASTER_UI), 2 workers × 1 core, $WORKER_MEMORY each"
}
timed cluster_start start_cluster

submit() {
  spark-submit --master "$MASTER" \
    --conf spark.driver.host=127.0.0.1 --conf spark.driver.bindAddress=127.0.0.1 \
    --conf spark.ui.enabled=false \
    --conf spark.executor.cores=1 --conf spark.cores.max=2 \
    --conf spark.executor.memory="$EXECUTOR_MEMORY" --conf spark.driver.memory=1g \
    --conf spark.sql.session.timeZone=UTC \
    --files "$ARREARS" \
    "$HERE/spark_replay.py" \
    --events "$SCRATCH/events.parquet" --as-of "$AS_OF" --out "$SCRATCH/spark-out" \
    --arrears "$(basename "$ARREARS")" --partitions "$PARTITIONS" \
    >"$SCRATCH/logs/driver.log" 2>&1
}
timed spark_job submit
timed cluster_stop stop_cluster

# ---- 4. compare ----------------------------------------------------------------------------
to_lines() {
  "$VENV/bin/python" - "$SCRATCH/spark-out" "$SCRATCH/spark.jsonl" <<'EOF'
import sys
import pyarrow.parquet as pq
t = pq.read_table(sys.argv[1], columns=["loan_id", "projection"]).sort_by("loan_id")
with open(sys.argv[2], "w", encoding="utf-8", newline="\n") as f:
    for batch in t.to_batches():
        for line in batch.column(1).to_pylist():
            f.write(line)
            f.write("\n")
EOF
}
timed compare_prepare to_lines
LOCAL_ROWS=$(wc -l <"$SCRATCH/local.jsonl")
SPARK_ROWS=$(wc -l <"$SCRATCH/spark.jsonl")
if cmp -s "$SCRATCH/local.jsonl" "$SCRATCH/spark.jsonl"; then
  log "equal: $SPARK_ROWS projections from Spark = $LOCAL_ROWS from local replay, byte for byte"
  cat "$TIMINGS" >&2
  exit 0
fi
log "DIFFERENT: Spark gave $SPARK_ROWS rows, local replay $LOCAL_ROWS"
diff <(cut -c1-200 "$SCRATCH/local.jsonl") <(cut -c1-200 "$SCRATCH/spark.jsonl") | head -n 10 >&2 || true
exit 1
