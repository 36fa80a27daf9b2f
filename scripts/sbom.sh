#!/usr/bin/env bash
# CycloneDX SBOM of the runtime tree, reproducibly.
#
#   bash scripts/sbom.sh [OUT_DIR]      -> OUT_DIR/sre-mini.cdx.json (default target/supply-chain/)
#
# cargo-cyclonedx, JSON, spec 1.5, for the shipped target (x86_64-unknown-linux-musl), without
# build-time dependencies, with SOURCE_DATE_EPOCH = the last commit's time (so the timestamp is fixed
# and no random serial number is added). It runs on two copies of the source in two different
# directories and twice in the first; all outputs must be byte-identical. cargo-cyclonedx writes the
# source directory into the root crate's bom-ref (`path+file:///...`); like the binary's
# --remap-path-prefix, that prefix is rewritten to /build/sre-mini, and that is the only rewrite.
# (Both copies are named sre-mini: cargo's package id omits the name when the directory carries it.)
# The result is then checked against cargo (tests/supply_chain/sbom_check.py --self-test).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

TARGET="${SBOM_TARGET:-x86_64-unknown-linux-musl}"
OUT_DIR="${1:-$ROOT/target/supply-chain}"
need cargo-cyclonedx

if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  : "${SOURCE_DATE_EPOCH:=$(git -C "$ROOT" log -1 --format=%ct)}"
fi
[ -n "${SOURCE_DATE_EPOCH:-}" ] || die "SOURCE_DATE_EPOCH is unset and there is no git history to take it from"
export SOURCE_DATE_EPOCH

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-sbom.XXXXXX")"
cleanup() { [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"; }
trap cleanup EXIT

copy_source() { # copy_source DIR: Cargo.toml, Cargo.lock, build.rs and src/ are all cargo-cyclonedx reads
  mkdir -p "$1"
  git -C "$ROOT" ls-files -z --cached --others --exclude-standard -- Cargo.toml Cargo.lock build.rs src \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | tar -C "$ROOT" --null -T - -cf - | tar -C "$1" -xf -
}

generate() { # generate SRCDIR OUTFILE
  local dir=$1 out=$2
  (cd "$dir" && cargo cyclonedx --format json --spec-version 1.5 --no-build-deps --target "$TARGET" \
    --override-filename sre-mini.cdx -q) || die "cargo cyclonedx failed in $dir"
  srekit supply_chain sbom-path "$dir" "$dir/sre-mini.cdx.json" "$out"
  rm -f "$dir/sre-mini.cdx.json"
}

copy_source "$WORK/a/sre-mini"
copy_source "$WORK/b/somewhere/else/sre-mini"
generate "$WORK/a/sre-mini" "$WORK/1.json"
generate "$WORK/a/sre-mini" "$WORK/2.json"
generate "$WORK/b/somewhere/else/sre-mini" "$WORK/3.json"
cmp "$WORK/1.json" "$WORK/2.json" || die "cargo cyclonedx gave different bytes on two runs in the same directory"
cmp "$WORK/1.json" "$WORK/3.json" || die "the SBOM differs between two source directories"
printf 'SBOM sha256 (3 runs, 2 directories): %s\n' "$(sha256sum "$WORK/1.json" | cut -d' ' -f1)"

mkdir -p "$OUT_DIR"
cp "$WORK/1.json" "$OUT_DIR/sre-mini.cdx.json"
also=()
for a in $SHIPPED_ARCHES; do also+=(--also-target "$(rust_target "$a")"); done
# One SBOM describes the multi-arch image, so every shipped target must have the same runtime tree.
python3 "$ROOT/tests/supply_chain/sbom_check.py" --sbom "$OUT_DIR/sre-mini.cdx.json" "${also[@]}" \
  --manifest-path "$ROOT/Cargo.toml" --target "$TARGET" --source-date-epoch "$SOURCE_DATE_EPOCH" \
  --license-file "$ROOT/LICENSE" --self-test
say "SBOM: $OUT_DIR/sre-mini.cdx.json (CycloneDX 1.5, $TARGET, runtime tree only)"
