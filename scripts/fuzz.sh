#!/usr/bin/env bash
# Fuzz every target for a bounded time: the event parser, the binary codec, the chunk decoder,
# the snapshot reader, and store operations compared between the sled and in-memory backends.
#   scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 20)
# Installs cargo-fuzz from crates.io when missing. cargo-fuzz needs the compiler's unstable
# sanitizer flags; the machine has one stable toolchain, so RUSTC_BOOTSTRAP=1 enables them for
# this build only (the product itself never builds with it).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --quiet
fi
export RUSTC_BOOTSTRAP=1
for t in parse_event codec chunk snapshot store_ops; do
  mkdir -p "corpus/$t"
  echo "fuzz $t for ${secs}s"
  cargo fuzz run --sanitizer none "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -3
done
