#!/usr/bin/env bash
# Reproducible, auditable release build: two clean builds of the same source in two different
# directories must produce the same sha256, for each shipped architecture (scripts/lib.sh SHIPPED_ARCHES:
# x86_64 and aarch64 musl; REPRO_TARGET=<triple> builds only that one).
#
#   bash scripts/reproducible-build.sh [OUT_DIR]
#
# Each build copies the source (tracked and untracked-but-not-ignored files, without fuzz/ and bench/)
# into its own temporary directory, with its own CARGO_TARGET_DIR, and runs
#   cargo auditable build --release --locked --target <triple>
# with a fixed SOURCE_DATE_EPOCH (the last commit's time), a fixed SRE_MINI_REVISION (HEAD), and
# --remap-path-prefix for the source directory and $CARGO_HOME, so no build path reaches the binary.
# The release profile (codegen-units = 1, LTO, strip) comes from Cargo.toml and is asserted here.
# On success the binary, its sha256 and the build parameters are written to OUT_DIR
# (default: target/supply-chain/).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

if [ -n "${REPRO_TARGET:-}" ]; then TARGETS=("$REPRO_TARGET"); else
  TARGETS=(); for a in $SHIPPED_ARCHES; do TARGETS+=("$(rust_target "$a")"); done
fi
OUT_DIR="${1:-$ROOT/target/supply-chain}"
CARGO_HOME="${CARGO_HOME:-$HOME/.cargo}"
CARGO_HOME="$(cd "$CARGO_HOME" && pwd -P)"

need cargo-auditable
for t in "${TARGETS[@]}"; do need_target "$t"; done

# The profile settings reproducibility depends on are part of the reviewed manifest, not of this script.
srekit supply_chain release-profile Cargo.toml \
  || die "Cargo.toml [profile.release] must keep codegen-units = 1, lto = true, strip, incremental = false"

# Fixed inputs: the commit time and the commit id (build.rs embeds the revision).
if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
  : "${SOURCE_DATE_EPOCH:=$(git -C "$ROOT" log -1 --format=%ct)}"
  : "${SRE_MINI_REVISION:=$(git -C "$ROOT" rev-parse HEAD)}"
fi
[ -n "${SOURCE_DATE_EPOCH:-}" ] || die "SOURCE_DATE_EPOCH is unset and there is no git history to take it from"
[ -n "${SRE_MINI_REVISION:-}" ] || die "SRE_MINI_REVISION is unset and there is no git history to take it from"
export SOURCE_DATE_EPOCH SRE_MINI_REVISION

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-repro.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# The file list: what a fresh clone would contain (plus new files not yet committed), minus the
# separate fuzz/ and bench/ workspaces, which the release build never reads.
list_sources() {
  if git -C "$ROOT" rev-parse --git-dir >/dev/null 2>&1; then
    git -C "$ROOT" ls-files -z --cached --others --exclude-standard
  else
    find . -path ./target -prune -o -type f -print0 | sed -z 's|^\./||'
  fi
}

build_in() { # build_in DIR: the binary lands in DIR/target/$TARGET/release/sre-mini
  local dir=$1
  mkdir -p "$dir"
  list_sources | grep -zv -E '^(fuzz|bench|target)/' \
    | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
    | tar -C "$ROOT" --null -T - -cf - | tar -C "$dir" -xf -
  (
    cd "$dir"
    # A clean, fixed environment: nothing from the caller's RUSTFLAGS, no incremental state,
    # a fresh target directory inside the copy.
    env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u RUSTC_WRAPPER \
      -u CARGO_BUILD_TARGET_DIR \
      TZ=UTC LC_ALL=C CARGO_INCREMENTAL=0 CARGO_TARGET_DIR="$dir/target" \
      RUSTFLAGS="--remap-path-prefix=$dir=/build/sre-mini --remap-path-prefix=$CARGO_HOME=/cargo $(target_rustflags "$TARGET")" \
      cargo auditable build --release --locked --target "$TARGET" >&2
  ) || die "cargo auditable build failed in $dir"
  [ -f "$dir/target/$TARGET/release/sre-mini" ] || die "no binary in $dir/target/$TARGET/release"
}

mkdir -p "$OUT_DIR"
: >"$OUT_DIR/build-info.txt"
for TARGET in "${TARGETS[@]}"; do
say "reproducible build: $TARGET, SOURCE_DATE_EPOCH=$SOURCE_DATE_EPOCH ($(date -u -d "@$SOURCE_DATE_EPOCH" +%FT%TZ)), revision $SRE_MINI_REVISION"
rm -rf "$WORK/a" "$WORK/b"
say "build 1 of 2 in $WORK/a/src"
build_in "$WORK/a/src"; BIN_A="$WORK/a/src/target/$TARGET/release/sre-mini"
say "build 2 of 2 in $WORK/b/elsewhere/deeper/sre-mini-copy"
build_in "$WORK/b/elsewhere/deeper/sre-mini-copy"; BIN_B="$WORK/b/elsewhere/deeper/sre-mini-copy/target/$TARGET/release/sre-mini"

HASH_A="$(sha256sum "$BIN_A" | cut -d' ' -f1)"
HASH_B="$(sha256sum "$BIN_B" | cut -d' ' -f1)"
printf 'sha256 build 1: %s\nsha256 build 2: %s\n' "$HASH_A" "$HASH_B"
if [ "$HASH_A" != "$HASH_B" ]; then
  cmp -l "$BIN_A" "$BIN_B" | head -20 >&2 || true
  die "the two release builds differ: the build is not reproducible"
fi

cp "$BIN_A" "$OUT_DIR/sre-mini-$TARGET"
printf '%s  sre-mini-%s\n' "$HASH_A" "$TARGET" >"$OUT_DIR/sre-mini-$TARGET.sha256"
{
  printf 'target=%s\nsource_date_epoch=%s\nrevision=%s\nsha256=%s\n' "$TARGET" "$SOURCE_DATE_EPOCH" "$SRE_MINI_REVISION" "$HASH_A"
  printf 'rustc=%s\ncargo=%s\ncargo_auditable=%s\n' "$(rustc -V)" "$(cargo -V)" "$(cargo install --list 2>/dev/null | grep -m1 "^cargo-auditable " | tr -d : || echo unknown)"
  printf '\n'
} >>"$OUT_DIR/build-info.txt"
say "reproducible: both builds are $HASH_A ($OUT_DIR/sre-mini-$TARGET, $(stat -c %s "$BIN_A") bytes)"
done
