#!/usr/bin/env bash
# check-arm64.sh: the arm64 release binary, built on this (x86_64) machine and exercised under emulation.
#   1. `cargo auditable build --release --locked --target aarch64-unknown-linux-musl` (linked by rust-lld, see
#      .cargo/config.toml), the Dockerfile's command for TARGETARCH=arm64
#   2. a static, stripped aarch64 ELF with its embedded dependency list; stripped size <= ARM64_MAX_BYTES (650 KiB)
#   3. the integration tests (tests/service.rs, corpus.rs, metrics.rs, smoke.rs) against it, run by the host test
#      harness with SRE_MINI_BIN set to the arm64 binary and SRE_MINI_RUNNER=qemu-aarch64-static
#   4. the container contract (scripts/container-contract.sh with CONTRACT_ARCH=arm64)
# Not run under emulation: tests/drills.rs. Its drills assert latency and throughput bounds (probe p99 while
# /work saturates, shutdown timings), and qemu-user's translation slows the binary by a large, load-dependent
# factor, so a pass or a failure there would measure the emulator. They run natively in the `tests` step.
# Skipped under emulation: tests/metrics.rs process_metrics_are_present_and_plausible. qemu-user answers the guest's
# reads of /proc/self/stat itself and fills CPU time, memory and thread count with 0 (the host's /proc/<pid>/stat
# of the same process has the real values), so the test would check qemu's stub; it runs natively in `tests`.
# Usage: bash scripts/check-arm64.sh [build|tests|container]...   (default: all three)
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

TARGET=$(rust_target arm64)
ARM64_MAX_BYTES="${ARM64_MAX_BYTES:-$((650 * 1024))}"
need_target "$TARGET"
need cargo-auditable qemu-aarch64-static
need_apt file file
RUNNER=$(command -v qemu-aarch64-static)
OUT="$ROOT/target/check-arm64"
BIN="$OUT/target/$TARGET/release/sre-mini"

step_build() {
  say "cargo auditable build --release --locked --target $TARGET"
  local cargo_home
  cargo_home="$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)"
  env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS TZ=UTC LC_ALL=C CARGO_INCREMENTAL=0 \
    CARGO_TARGET_DIR="$OUT/target" \
    RUSTFLAGS="--remap-path-prefix=$ROOT=/build/sre-mini --remap-path-prefix=$cargo_home=/cargo $(target_rustflags "$TARGET")" \
    cargo auditable build --release --locked --quiet --target "$TARGET" || die "the arm64 build failed"
  local ftype size
  ftype=$(file -b "$BIN")
  echo "file: $ftype"
  case "$ftype" in *"ARM aarch64"*) ;; *) die "not an aarch64 binary" ;; esac
  case "$ftype" in *"statically linked"* | *"static-pie linked"*) ;; *) die "not statically linked" ;; esac
  case "$ftype" in *", stripped"*) ;; *) die "not stripped" ;; esac
  python3 tests/k8s/image_checks.py elf "$BIN" || die "the arm64 binary is dynamic or lacks its dependency list"
  python3 tests/supply_chain/auditable_check.py "$BIN" --manifest-path Cargo.toml --target "$TARGET" \
    || die "the arm64 binary's embedded dependency list differs from the tree"
  size=$(stat -c %s "$BIN")
  echo "arm64 stripped size: $size bytes ($((size / 1024)) KiB; budget $((ARM64_MAX_BYTES / 1024)) KiB)"
  [ "$size" -le "$ARM64_MAX_BYTES" ] || die "the arm64 binary is $size bytes, above the $ARM64_MAX_BYTES byte budget"
  local v
  v=$("$RUNNER" "$BIN" --version) || die "the arm64 binary does not run under $RUNNER"
  echo "under qemu: $v"
}

step_tests() {
  [ -x "$BIN" ] || step_build
  say "integration tests against the arm64 binary under $RUNNER (host test harness)"
  SRE_MINI_BIN="$BIN" SRE_MINI_RUNNER="$RUNNER" \
    cargo test --locked --release --test service --test corpus --test metrics --test smoke -- \
    --skip process_metrics_are_present_and_plausible \
    || die "integration tests failed against the arm64 binary"
}

step_container() {
  say "container contract, arm64 under emulation"
  CONTRACT_ARCH=arm64 bash "$ROOT/scripts/container-contract.sh" || die "the container contract failed for arm64"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(build tests container)
for s in "${steps[@]}"; do
  case "$s" in
    build) step_build ;;
    tests) step_tests ;;
    container) step_container ;;
    *) die "unknown step $s (build tests container)" ;;
  esac
done
say "arm64: ${steps[*]} passed"
