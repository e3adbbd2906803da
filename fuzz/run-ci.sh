#!/usr/bin/env bash
# Fuzzes every target in fuzz/ for a bounded time (FUZZ_SECONDS each, default
# 30), starting from its committed corpus. Fails if any target finds a crash,
# panic, sanitizer report, leak, out-of-memory or a slow input. Called from
# .ci/run; see fuzz/README.md.
#
# Environment:
#   FUZZ_SECONDS           seconds per target (default 30)
#   FUZZ_SANITIZER         address (default) or none
#   POLIS_FUZZ_TARGET_DIR  build directory (default /var/cache/polis-fuzz-target),
#                          kept apart from the main build's CARGO_TARGET_DIR
set -euo pipefail
cd "$(dirname "$0")"

FUZZ_SECONDS="${FUZZ_SECONDS:-30}"
FUZZ_SANITIZER="${FUZZ_SANITIZER:-address}"
CARGO_FUZZ_VERSION="0.13.2"

# Own build directory: the fuzz build uses other RUSTFLAGS than the workspace
# build and must not invalidate it.
export CARGO_TARGET_DIR="${POLIS_FUZZ_TARGET_DIR:-/var/cache/polis-fuzz-target}"
# cargo-fuzz passes -Z flags (-Zsanitizer=address) and the machine has only a
# stable toolchain: RUSTC_BOOTSTRAP=1 lets stable rustc accept them.
export RUSTC_BOOTSTRAP=1
export CARGO_TERM_COLOR=never
mkdir -p "$CARGO_TARGET_DIR"
# Cargo caches rustc's answers in .rustc_info.json without keying them on
# RUSTC_BOOTSTRAP: one earlier run without it leaves a cached "-Z is only
# accepted on the nightly compiler" failure behind. Cheap to recompute.
rm -f "$CARGO_TARGET_DIR/.rustc_info.json"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi
cargo fuzz --version

echo "== building fuzz targets (sanitizer: $FUZZ_SANITIZER)"
start=$SECONDS
cargo fuzz build -O -s "$FUZZ_SANITIZER"
echo "built in $((SECONDS - start)) s"

# New inputs found in CI go to a scratch directory, not into the committed
# corpus; the committed corpus is read as seeds.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

passed=0
failed=0
failed_targets=()
for target in $(cargo fuzz list); do
  echo "== fuzzing $target for ${FUZZ_SECONDS} s"
  mkdir -p "$scratch/$target" "corpus/$target"
  args=(-max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  if [[ -f "$target.dict" ]]; then
    args+=(-dict="$target.dict")
  fi
  log="$scratch/$target.log"
  touch "$scratch/$target.start"
  if cargo fuzz run -O -s "$FUZZ_SANITIZER" "$target" "$scratch/$target" "corpus/$target" \
    -- "${args[@]}" >"$log" 2>&1; then
    grep -E '^#[0-9]+[[:space:]]+DONE|^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" || tail -n 5 "$log"
    passed=$((passed + 1))
  else
    echo "!! $target FAILED; the error, then the last lines of its log:"
    grep -m 3 -A 3 -E 'panicked at|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)' "$log" || true
    echo "!! ..."
    tail -n 80 "$log"
    mkdir -p "artifacts/$target"
    find "artifacts/$target" -type f -newer "$scratch/$target.start" | while read -r artifact; do
      echo "!! reproducer $artifact (base64; decode and run:"
      echo "!!   cargo fuzz run -O $target fuzz/$artifact):"
      head -c 65536 "$artifact" | base64
    done
    failed=$((failed + 1))
    failed_targets+=("$target")
  fi
done

echo "fuzz: $passed passed, $failed failed"
if ((failed > 0)); then
  echo "failing fuzz targets: ${failed_targets[*]}"
  exit 1
fi
