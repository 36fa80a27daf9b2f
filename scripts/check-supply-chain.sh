#!/usr/bin/env bash
# Supply-chain checks. Every control is exercised both ways: the real tree passes, and a
# deliberately broken copy fails.
#
#   bash scripts/check-supply-chain.sh [STEP...]     STEP: deps negative evidence workflow | all (default)
#                                                     release-artifacts (the release job's build, no checks)
#
#   deps      cargo deny (advisories bans licenses sources) and cargo audit on Cargo.lock, offline against
#             the RustSec snapshot in $ADVISORY_DB (default $SHARED_DIR/advisory-db; prints its date).
#             ADVISORY_DB=live fetches the live database instead (GitHub runners).
#   negative  proves each deny.toml control can fail: a new crate, a second version, a wildcard, a build
#             script, a foreign licence, an unused licence, a git source, another registry, and a
#             vulnerable / unmaintained / unsound advisory (cargo deny and cargo audit), all offline.
#   evidence  two clean `cargo auditable` musl builds in different directories -> same sha256; the
#             embedded dependency list = cargo tree; `cargo audit bin`; the SBOM (reproducible, exact).
#   workflow  actionlint and zizmor --offline on .github/workflows/ci.yml report nothing; the pin and
#             permission policy (tests/supply_chain/workflow_check.py --self-test); shellcheck.
# Outputs (binary, sha256, SBOM, build info) land in target/supply-chain/.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$ROOT"

ADVISORY_DB="${ADVISORY_DB:-$SHARED_DIR/advisory-db}"
if [ "$ADVISORY_DB" != live ] && [ -d "$ADVISORY_DB" ]; then ADVISORY_DB="$(cd "$ADVISORY_DB" && pwd -P)"; fi
OUT_DIR="$ROOT/target/supply-chain"
WORKFLOW="$ROOT/.github/workflows/ci.yml"
# cargo-deny's directory name for the default RustSec URL (see the snapshot's USAGE.md).
DENY_DB_DIR="advisory-db-3157b0e258782691"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-supply-chain.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

# Quiet, fixed identity for the throw-away git repositories made below.
export GIT_AUTHOR_NAME=check GIT_AUTHOR_EMAIL=check@invalid GIT_COMMITTER_NAME=check GIT_COMMITTER_EMAIL=check@invalid
export GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z"
git_snapshot() { (cd "$1" && git init -q && git add -A && git commit -q --allow-empty -m snapshot); }

# deny_config DB_ROOT OUT: deny.toml with [advisories] db-path pointed at DB_ROOT.
deny_config() {
  srekit supply_chain deny-config "$ROOT/deny.toml" "$1" "$2"
}

# ---------------------------------------------------------------------------------------------------
step_deps() {
  need cargo-deny cargo-audit
  say "cargo deny $(cargo deny --version | awk '{print $2}'), cargo audit $(cargo audit --version | awk '{print $2}')"
  # The crates themselves (licence files, build-script scan); a no-op when the cache is warm.
  cargo fetch --locked >/dev/null 2>&1 || cargo fetch --locked

  if [ "$ADVISORY_DB" = live ]; then
    say "cargo deny check advisories bans licenses sources (live RustSec database)"
    cargo deny --locked check --show-stats advisories bans licenses sources
    say "cargo audit (live RustSec database) on Cargo.lock"
    cargo audit --deny warnings
    return
  fi

  [ -f "$ADVISORY_DB/SNAPSHOT.txt" ] || die "no advisory snapshot at $ADVISORY_DB (set ADVISORY_DB, or ADVISORY_DB=live)"
  local date commit
  date="$(sed -n 's/^commit-date: //p' "$ADVISORY_DB/SNAPSHOT.txt")"
  commit="$(sed -n 's/^commit: //p' "$ADVISORY_DB/SNAPSHOT.txt")"
  say "RustSec advisory-db snapshot: $ADVISORY_DB, dated $date (upstream commit ${commit:0:12}, $(sed -n 's/^advisories: //p' "$ADVISORY_DB/SNAPSHOT.txt") advisories)"
  # cargo-deny needs a git repository, and measures staleness from its commit: the date above is the real one.
  mkdir -p "$WORK/dbs/$DENY_DB_DIR"
  cp -R "$ADVISORY_DB/." "$WORK/dbs/$DENY_DB_DIR/"
  git_snapshot "$WORK/dbs/$DENY_DB_DIR"
  deny_config "$WORK/dbs" "$WORK/deny.toml"

  say "cargo deny --offline check advisories bans licenses sources"
  cargo deny --frozen --config "$WORK/deny.toml" --manifest-path "$ROOT/Cargo.toml" \
    check --show-stats advisories bans licenses sources
  say "cargo audit --no-fetch on Cargo.lock"
  cargo audit --no-fetch --stale --db "$ADVISORY_DB" --file "$ROOT/Cargo.lock" --deny warnings
}

# ---------------------------------------------------------------------------------------------------
# Negative tests: each case edits a scratch copy of the manifest (or the policy, or the database)
# and must make the named check fail with the named diagnostic. Offline: path crates and a local git
# repository stand in for the registry.
neg_new_project() { # neg_new_project DIR: the real manifest and lockfile, stub sources
  mkdir -p "$1/src"
  cp "$ROOT/Cargo.toml" "$ROOT/Cargo.lock" "$1/"
  printf 'fn main() {}\n' >"$1/build.rs"
  printf 'fn main() {}\n' >"$1/src/main.rs"
  : >"$1/src/lib.rs"
}
neg_crate() { # neg_crate DIR NAME VERSION LICENSE [build]: a local crate
  mkdir -p "$1/src"
  printf '[package]\nname = "%s"\nversion = "%s"\nedition = "2021"\nlicense = "%s"\n' "$2" "$3" "$4" >"$1/Cargo.toml"
  : >"$1/src/lib.rs"
  if [ "${5:-}" = build ]; then printf 'fn main() {}\n' >"$1/build.rs"; fi
}
neg_add_dep() { # neg_add_dep PROJECT LINE: append LINE to [dependencies]
  srekit supply_chain add-dep "$1/Cargo.toml" "$2"
}
neg_advisory() { # neg_advisory DBREPO ID CRATE KIND(vuln|unmaintained|unsound)
  local d="$1/crates/$3"
  mkdir -p "$d"
  {
    printf '```toml\n[advisory]\nid = "%s"\npackage = "%s"\ndate = "2026-01-01"\n' "$2" "$3"
    printf 'url = "https://example.invalid/%s"\n' "$2"
    [ "$4" = vuln ] || printf 'informational = "%s"\n' "$4"
    printf '\n[versions]\npatched = [">= 99.0.0"]\n```\n\n# %s: fixture for the negative tests\n\nNot a real advisory.\n' "$2"
  } >"$d/$2.md"
}

NEG_FAILS=0
# expect_fail NAME CODE CONFIG PROJECT CHECK...: cargo deny must fail and print diagnostic CODE.
expect_fail() {
  local name=$1 code=$2 config=$3 project=$4; shift 4
  local log="$WORK/neg-$name.log" rc=0
  cargo deny --offline --color never --config "$config" --manifest-path "$project/Cargo.toml" check "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && grep -q "\[$code\]" "$log"; then
    printf '  ok: %-16s -> cargo deny check %s fails with [%s]\n' "$name" "$*" "$code"
  else
    printf '  NOT CAUGHT: %s (rc=%s, wanted [%s]):\n' "$name" "$rc" "$code"
    sed 's/^/    /' "$log" | head -30
    NEG_FAILS=$((NEG_FAILS + 1))
  fi
}

step_negative() {
  need cargo-deny cargo-audit
  cargo fetch --locked >/dev/null 2>&1 || cargo fetch --locked
  local N="$WORK/neg" clean dirty
  mkdir -p "$N"
  # Two tiny advisory databases: "clean" names a crate outside our tree; "dirty" has a vulnerability
  # for libc (direct), an unmaintained notice for errno and an unsound one for signal-hook-registry
  # (both transitive: unmaintained/unsound = "all" must reach them).
  clean="$N/db-clean"; dirty="$N/db-dirty"
  mkdir -p "$clean/$DENY_DB_DIR" "$dirty/$DENY_DB_DIR"
  neg_advisory "$clean/$DENY_DB_DIR" RUSTSEC-2099-0001 not-in-our-tree vuln
  neg_advisory "$dirty/$DENY_DB_DIR" RUSTSEC-2099-0002 libc vuln
  neg_advisory "$dirty/$DENY_DB_DIR" RUSTSEC-2099-0003 errno unmaintained
  neg_advisory "$dirty/$DENY_DB_DIR" RUSTSEC-2099-0004 signal-hook-registry unsound
  git_snapshot "$clean/$DENY_DB_DIR"; git_snapshot "$dirty/$DENY_DB_DIR"
  deny_config "$clean" "$N/deny.toml"
  deny_config "$dirty" "$N/deny-dirty.toml"

  say "negative tests: the policy must reject each of these (and accept the unchanged tree)"
  neg_new_project "$N/base"
  cargo deny --offline --color never --config "$N/deny.toml" --manifest-path "$N/base/Cargo.toml" \
    check advisories bans licenses sources >"$WORK/neg-base.log" 2>&1 \
    || { cat "$WORK/neg-base.log"; die "the unchanged scratch copy does not pass; the negative tests would prove nothing"; }
  printf '  ok: %-16s -> passes all four checks\n' "unchanged tree"

  local p
  p="$N/new-crate"; neg_new_project "$p"; neg_crate "$p/extra" extra-crate 0.1.0 Apache-2.0
  neg_add_dep "$p" 'extra-crate = { path = "extra", version = "0.1.0" }'
  expect_fail new-crate not-allowed "$N/deny.toml" "$p" bans

  p="$N/duplicate"; neg_new_project "$p"; neg_crate "$p/libc01" libc 0.1.0 Apache-2.0
  neg_add_dep "$p" 'libc-old = { package = "libc", path = "libc01", version = "0.1.0" }'
  expect_fail duplicate duplicate "$N/deny.toml" "$p" bans

  p="$N/wildcard"; neg_new_project "$p"
  sed -i -E 's/^libc = .*$/libc = "*"/' "$p/Cargo.toml"
  grep -q '^libc = "\*"$' "$p/Cargo.toml" || die "negative test setup: could not turn the libc requirement into a wildcard"
  expect_fail wildcard wildcard "$N/deny.toml" "$p" bans

  p="$N/build-script"; neg_new_project "$p"; neg_crate "$p/bs" build-script-crate 0.1.0 Apache-2.0 build
  neg_add_dep "$p" 'build-script-crate = { path = "bs", version = "0.1.0" }'
  expect_fail build-script build-script-not-allowed "$N/deny.toml" "$p" bans

  p="$N/licence"; neg_new_project "$p"; neg_crate "$p/gpl" gpl-crate 0.1.0 GPL-3.0-only
  neg_add_dep "$p" 'gpl-crate = { path = "gpl", version = "0.1.0" }'
  expect_fail licence rejected "$N/deny.toml" "$p" licenses

  sed 's/^allow = \["Apache-2.0"\]$/allow = ["Apache-2.0", "BSD-3-Clause"]/' "$N/deny.toml" >"$N/deny-wide.toml"
  grep -q 'BSD-3-Clause' "$N/deny-wide.toml" || die "negative test setup: could not widen the licence list"
  expect_fail unused-licence license-not-encountered "$N/deny-wide.toml" "$N/base" licenses

  # A git dependency, from a local repository (no network): fetched once without --offline.
  p="$N/git-source"; neg_new_project "$p"; neg_crate "$N/gitrepo" git-crate 0.1.0 Apache-2.0
  git_snapshot "$N/gitrepo"
  neg_add_dep "$p" "git-crate = { git = \"file://$N/gitrepo\", version = \"0.1.0\" }"
  CARGO_NET_GIT_FETCH_WITH_CLI=true cargo metadata --format-version 1 --manifest-path "$p/Cargo.toml" >/dev/null 2>"$WORK/git.log" \
    || { cat "$WORK/git.log"; die "negative test setup: cargo could not resolve the local git dependency"; }
  expect_fail git-source source-not-allowed "$N/deny.toml" "$p" sources

  # Another registry: the real metadata with libc's source switched to a foreign index.
  cargo metadata --format-version 1 --locked --offline --manifest-path "$N/base/Cargo.toml" >"$N/foreign.json"
  srekit supply_chain foreign-registry "$N/foreign.json"
  local rc=0
  cargo deny --offline --color never --config "$N/deny.toml" --metadata-path "$N/foreign.json" \
    --manifest-path "$N/base/Cargo.toml" check sources >"$WORK/neg-registry.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && grep -q '\[source-not-allowed\]' "$WORK/neg-registry.log"; then
    printf '  ok: %-16s -> cargo deny check sources fails with [source-not-allowed]\n' other-registry
  else
    printf '  NOT CAUGHT: other-registry (rc=%s)\n' "$rc"; sed 's/^/    /' "$WORK/neg-registry.log" | head -20
    NEG_FAILS=$((NEG_FAILS + 1))
  fi

  expect_fail vulnerability vulnerability "$N/deny-dirty.toml" "$N/base" advisories
  expect_fail unmaintained unmaintained "$N/deny-dirty.toml" "$N/base" advisories
  expect_fail unsound unsound "$N/deny-dirty.toml" "$N/base" advisories

  rc=0
  cargo audit --no-fetch --db "$dirty/$DENY_DB_DIR" --file "$N/base/Cargo.lock" >"$WORK/neg-audit.log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ] && grep -q 'RUSTSEC-2099-0002' "$WORK/neg-audit.log"; then
    printf '  ok: %-16s -> cargo audit fails with RUSTSEC-2099-0002\n' audit-vuln
  else
    printf '  NOT CAUGHT: audit-vuln (rc=%s)\n' "$rc"; sed 's/^/    /' "$WORK/neg-audit.log" | head -20
    NEG_FAILS=$((NEG_FAILS + 1))
  fi

  [ "$NEG_FAILS" -eq 0 ] || die "$NEG_FAILS negative test(s) were not caught: a control in deny.toml does not work"
}

# ---------------------------------------------------------------------------------------------------
step_release_artifacts() {
  bash "$ROOT/scripts/reproducible-build.sh" "$OUT_DIR"
  bash "$ROOT/scripts/sbom.sh" "$OUT_DIR"
}

step_evidence() {
  need cargo-audit
  step_release_artifacts
  local arch target bin
  for arch in $SHIPPED_ARCHES; do
    target=$(rust_target "$arch")
    bin="$OUT_DIR/sre-mini-$target"
    say "the dependency list embedded by cargo auditable ($target)"
    python3 "$ROOT/tests/supply_chain/auditable_check.py" "$bin" --manifest-path "$ROOT/Cargo.toml" --target "$target"
    say "cargo audit bin (reads the embedded list; $target)"
    if [ "$ADVISORY_DB" = live ]; then
      cargo audit --deny warnings bin "$bin"
    else
      [ -d "$ADVISORY_DB/crates" ] || die "no advisory snapshot at $ADVISORY_DB"
      cargo audit --no-fetch --stale --db "$ADVISORY_DB" --deny warnings bin "$bin"
    fi
  done
}

# ---------------------------------------------------------------------------------------------------
step_workflow() {
  need actionlint zizmor shellcheck # actionlint runs shellcheck on every `run:` block
  say "actionlint $(actionlint -version | head -1) on $WORKFLOW"
  local out
  out="$(actionlint "$WORKFLOW" 2>&1)" || { printf '%s\n' "$out"; die "actionlint reported problems"; }
  [ -z "$out" ] || { printf '%s\n' "$out"; die "actionlint printed findings"; }
  echo "actionlint: no findings"
  say "$(zizmor --version) --offline on $WORKFLOW"
  out="$(NO_COLOR=1 zizmor --offline --no-progress --color never "$WORKFLOW" 2>/dev/null)" || { printf '%s\n' "$out"; die "zizmor reported findings"; }
  grep -q '^No findings to report' <<<"$out" || { printf '%s\n' "$out"; die "zizmor printed findings"; }
  echo "zizmor: no findings"
  say "workflow policy (pins, permissions, triggers, timeouts, Trivy thresholds)"
  python3 "$ROOT/tests/supply_chain/workflow_check.py" "$WORKFLOW" --self-test
  say "shellcheck on the supply-chain scripts"
  shellcheck -x -P "$ROOT/scripts" "$ROOT/scripts/check-supply-chain.sh" "$ROOT/scripts/reproducible-build.sh" "$ROOT/scripts/sbom.sh"
  echo "shellcheck: no findings"
}

# ---------------------------------------------------------------------------------------------------
STEPS=("$@")
[ "${#STEPS[@]}" -gt 0 ] || STEPS=(all)
[ "${STEPS[*]}" = all ] && STEPS=(deps negative evidence workflow)
T0=$SECONDS
for s in "${STEPS[@]}"; do
  t=$SECONDS
  case "$s" in
    deps) step_deps ;;
    negative) step_negative ;;
    evidence) step_evidence ;;
    workflow) step_workflow ;;
    release-artifacts) step_release_artifacts ;;
    *) die "unknown step '$s' (deps negative evidence workflow release-artifacts all)" ;;
  esac
  say "supply chain: $s passed in $((SECONDS - t)) s"
done
say "supply chain: ${STEPS[*]} passed in $((SECONDS - T0)) s"
