#!/usr/bin/env bash
# scale/install.sh — installs what the Parquet and Spark checks need, if missing, and prints the
# Python venv's directory on standard output:
#   - a Java 17 runtime (Debian's openjdk-17-jre-headless) unless `java` 17+ is on the PATH;
#   - a venv with pinned pyspark and pyarrow (PyPI) under $ARREARS_SCALE_CACHE
#     (default ~/.cache/arrears-scale).
# Fast when everything is there (one `java -version`, one Python import). Used by scale/spark.sh
# and .ci/run (which points the pyarrow read-back test at the venv's python).
set -euo pipefail

PYSPARK_VERSION=3.5.7
PYARROW_VERSION=26.0.1
CACHE=${ARREARS_SCALE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/arrears-scale}
VENV=$CACHE/venv-pyspark-$PYSPARK_VERSION

log() { echo "install.sh: $*" >&2; }

apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "$@" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && apt-get install -y -q "$@" >/dev/null; }
}

if ! { command -v java >/dev/null 2>&1 &&
  java -version 2>&1 | head -n 1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; }; then
  log "installing a Java 17 runtime (openjdk-17-jre-headless)"
  apt_install openjdk-17-jre-headless
fi

mkdir -p "$CACHE"
(
  flock 9
  if ! "$VENV/bin/python" -c "import sys, pyspark, pyarrow; sys.exit(pyspark.__version__ != '$PYSPARK_VERSION' or pyarrow.__version__ != '$PYARROW_VERSION')" 2>/dev/null; then
    log "installing pyspark $PYSPARK_VERSION and pyarrow $PYARROW_VERSION into $VENV"
    rm -rf "$VENV"
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$VENV"; }
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      "pyspark==$PYSPARK_VERSION" "pyarrow==$PYARROW_VERSION" >&2
  fi
) 9>"$CACHE/install.lock"
echo "$VENV"
