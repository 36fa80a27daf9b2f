#!/usr/bin/env bash
# container-contract.sh: the container as k8s.yaml runs it, proven without a container runtime or registry.
#   1. build the static musl release binary from exactly the .dockerignore allow-list with the Dockerfile's command
#      (cargo auditable build --release --locked, same RUSTFLAGS), SRE_MINI_REVISION set as its build ARG passes it
#   2. assert it is statically linked (no dynamic loader, no needed libraries) and carries its dependency list
#   3. run it as k8s.yaml's securityContext does: uid/gid 65532, all capabilities dropped (bounding set too),
#      no-new-privs, read-only minimal root, tmpfs at /tmp, PID 1 (unshare + setpriv, util-linux); check the
#      process really has those properties, that every endpoint of the contract answers, the probe mode used by
#      HEALTHCHECK, graceful SIGTERM as PID 1, and the /panic drill
#   4. assemble the final stage with buildah (FROM scratch, chroot isolation, no registry) from the Dockerfile's
#      own USER / ENTRYPOINT / HEALTHCHECK / LABEL values, and check the image config and that it has no shell
# CONTRACT_ARCH=arm64 runs all of it against the aarch64 binary, under qemu-aarch64-static (Debian qemu-user-static)
# copied into the sandbox root: the emulator is then PID 1 and runs the binary in its own process, so the uid,
# capability, no-new-privs and mount checks still read the process that serves. What emulation does not show:
# the arm64 kernel's own syscall and seccomp behaviour (qemu translates syscalls to the host kernel).
# Needs root (mount namespaces, chroot); uses sudo otherwise. Everything it creates is removed on exit.
. "$(dirname "$0")/lib.sh"
cd "$ROOT"
ARCH="${CONTRACT_ARCH:-amd64}"
TARGET=$(rust_target "$ARCH")
need_target "$TARGET"
RUNNER="" COMM=sre-mini
if [ "$ARCH" != amd64 ]; then
  [ "$ARCH" = arm64 ] || die "CONTRACT_ARCH=$ARCH: only amd64 (native) and arm64 (qemu) are shipped"
  need qemu-aarch64-static
  RUNNER=$(command -v qemu-aarch64-static)
  COMM=qemu-aarch64-st # the kernel's 15-character comm of the emulator that runs the binary
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
need_musl
need cargo-auditable buildah
need_apt unshare util-linux
need_apt setpriv util-linux
need_apt chroot coreutils
need_apt file file
need_apt curl curl
command -v ldd >/dev/null || die "ldd (libc-bin) is missing"

OUT="$ROOT/target/container-contract"
mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/sre-mini-contract.XXXXXX)
chmod 0755 "$WORK" # uid 65532 must be able to reach the sandbox's /tmp for the write test
REV=$(git rev-parse HEAD 2>/dev/null || echo unknown)
PY="$ROOT/tests/k8s/image_checks.py"
SANDBOX="$ROOT/tests/k8s/sandbox.sh"

# Buildah: its own storage under $WORK (vfs, chroot isolation: no overlay, no runc, no registry in this sandbox).
# (passed through env so that sudo, which resets the environment, keeps them)
BUILDAH=($SUDO env STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot BUILDAH_FORMAT=docker
  buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver vfs)
IMAGE="localhost/sre-mini-contract:$$"

pids=()     # our direct children (curl, and sudo/unshare launchers)
sandboxed=() # the sandboxed sre-mini processes (root-owned ancestors when run through sudo)
cleanup() {
  local p
  for p in "${sandboxed[@]}" "${pids[@]}"; do $SUDO kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -d "$WORK/storage" ]; then
    "${BUILDAH[@]}" rm --all >/dev/null 2>&1 || true
    "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
  fi
  $SUDO rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. build from the Docker context ---------------------------------------------------------------------------
say "build: cargo auditable build --release --locked --target $TARGET from the .dockerignore allow-list"
CTX="$OUT/context"
rm -rf "$CTX"
mkdir -p "$CTX"
mapfile -t ctx_paths < <(python3 "$PY" dockerignore) || die ".dockerignore is not an allow-list"
for p in "${ctx_paths[@]}"; do
  [ -e "$p" ] || die ".dockerignore admits $p, which does not exist"
  cp -a --parents "$p" "$CTX/"   # -a keeps mtimes, so an unchanged tree does not recompile
done
echo "context: ${ctx_paths[*]}"
CARGO_HOME_DIR="$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd -P)"
(cd "$CTX" && env -u RUSTFLAGS -u CARGO_ENCODED_RUSTFLAGS -u CARGO_BUILD_RUSTFLAGS -u RUSTC_WRAPPER \
  TZ=UTC LC_ALL=C CARGO_INCREMENTAL=0 SRE_MINI_REVISION="$REV" CARGO_TARGET_DIR="$OUT/target" \
  RUSTFLAGS="--remap-path-prefix=$CTX=/build/sre-mini --remap-path-prefix=$CARGO_HOME_DIR=/cargo $(target_rustflags "$TARGET")" \
  cargo auditable build --release --locked --quiet --target "$TARGET") \
  || die "the musl release build failed from the Docker context (does .dockerignore admit everything the build needs?)"
BIN="$OUT/target/$TARGET/release/sre-mini"
[ -x "$BIN" ] || die "no binary at $BIN"
echo "binary: $BIN ($(stat -c %s "$BIN") bytes), revision $REV"

# ---- 2. statically linked -----------------------------------------------------------------------------------------
say "static linking"
ftype=$(file -b "$BIN")
echo "file: $ftype"
case "$ftype" in *"statically linked"* | *"static-pie linked"*) ;; *) die "file(1) does not report a static binary" ;; esac
python3 "$PY" elf "$BIN" || die "the binary is dynamically linked or lacks its dependency list"
if ldd_out=$(ldd "$BIN" 2>&1); then
  case "$ldd_out" in *"statically linked"*) ;; *) die "ldd lists libraries: $ldd_out" ;; esac
fi
echo "ldd: ${ldd_out//$'\n'/ }"

# ---- 3. locked-down run ---------------------------------------------------------------------------------------------
say "run as uid 65532, no capabilities, no-new-privs, read-only root, tmpfs /tmp, PID 1"
# alive PID: the process exists and is not a zombie (works for root-owned processes without sudo).
alive() { [ -r "/proc/$1/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }
# sremini_under PID: the sre-mini process below PID (through sudo, env and unshare).
sremini_under() {
  ps -e -o pid=,ppid=,comm= | awk -v root="$1" -v want="$COMM" '
    { parent[$1] = $2; comm[$1] = $3 }
    END { for (p in comm) if (comm[p] == want) { q = p; while (q in parent && q != root && q > 1) q = parent[q]; if (q == root) print p } }' | head -n1
}
# sandbox_start NAME ENV...: start the binary in a fresh sandbox; sets SB_PID (launcher), SB_CHILD (sre-mini), SB_PORT.
sandbox_start() {
  local name=$1 log="$WORK/$1.log" root="$WORK/$1-root" i line
  shift
  mkdir -p "$root"
  $SUDO env -i ${RUNNER:+SANDBOX_RUNNER="$RUNNER"} "$@" unshare --mount --pid --fork --kill-child --propagation private \
    /bin/bash "$SANDBOX" "$root" "$BIN" >"$log" 2>&1 &
  SB_PID=$!
  pids+=("$SB_PID")
  SB_PORT=""
  for ((i = 0; i < 500; i++)); do # up to 5 s
    line=$(grep -m1 '"msg":"ready"' "$log" 2>/dev/null || true)
    if [ -n "$line" ]; then
      SB_PORT=$(printf '%s' "$line" | grep -oE '"addr":"[^"]*:[0-9]+"' | grep -oE '[0-9]+"$' | tr -d '"')
      break
    fi
    alive "$SB_PID" || break
    sleep 0.01
  done
  SB_CHILD=$(sremini_under "$SB_PID")
  [ -n "$SB_CHILD" ] && sandboxed+=("$SB_CHILD")
  [ -n "$SB_PORT" ] || { cat "$log" >&2; die "$name: the binary did not log ready within 5 s in the sandbox"; }
  [ -n "$SB_CHILD" ] || die "$name: cannot find the sandboxed process"
  SB_LOG=$log
}
# code METHOD PATH [curl args]: the status code of one request to the sandboxed server.
code() {
  local m=$1 p=$2
  shift 2
  curl -s -o /dev/null -w '%{http_code}' --max-time 10 -X "$m" "$@" "http://127.0.0.1:$SB_PORT$p" || true
}
fails=0
expect() { # expect WANT GOT WHAT
  if [ "$1" = "$2" ]; then printf '  ok   %-44s %s\n' "$3" "$2"; else printf '  FAIL %-44s got %s, want %s\n' "$3" "$2" "$1"; fails=$((fails + 1)); fi
}

sandbox_start main PORT=0 WORK_DELAY_MS=50 SHUTDOWN_DELAY_MS=300 DRAIN_TIMEOUT_MS=3000 DRILLS=on
sbval() { grep -m1 "^SANDBOX $1=" "$SB_LOG" | cut -d= -f2-; }
expect denied-erofs "$(sbval write-root-as-root)" "write to / as root with all caps"
expect denied-erofs "$(sbval write-home-as-65532)" "write to /home/nonroot (owned) as 65532"
expect ok "$(sbval write-tmp)" "write to /tmp as 65532"
expect absent "$(sbval shell)" "shell in the sandbox root"

# The running process itself, as the kernel sees it.
status=$($SUDO cat "/proc/$SB_CHILD/status")
field() { printf '%s\n' "$status" | awk -v k="$1:" '$1 == k { $1 = ""; sub(/^ /, ""); print }'; }
expect "65532 65532 65532 65532" "$(field Uid)" "Uid (real effective saved fs)"
expect "65532 65532 65532 65532" "$(field Gid)" "Gid (real effective saved fs)"
expect "" "$(field Groups)" "supplementary groups"
for cap in CapInh CapPrm CapEff CapBnd CapAmb; do expect 0000000000000000 "$(field $cap)" "$cap"; done
expect 1 "$(field NoNewPrivs)" "NoNewPrivs"
expect 1 "$($SUDO awk '$1 == "NSpid:" { print $NF }' "/proc/$SB_CHILD/status")" "PID in its namespace (PID 1)"
expect "${RUNNER:+$RUNNER }/sre-mini" "$($SUDO cat "/proc/$SB_CHILD/cmdline" | tr '\0' ' ' | sed 's/ $//')" "command line (exec form)"
mi=$($SUDO cat "/proc/$SB_CHILD/mountinfo")
rootopts=$(printf '%s\n' "$mi" | awk '$5 == "/" { print $6 }' | tail -n1)
tmpline=$(printf '%s\n' "$mi" | awk '$5 == "/tmp" { print $6, $(NF-2) }' | tail -n1)
expect ro "$(printf '%s' "$rootopts" | tr ',' '\n' | grep -x ro || echo rw)" "root filesystem mount"
expect "rw tmpfs" "$(printf '%s' "$tmpline" | awk '{ split($1, o, ","); print o[1], $2 }')" "/tmp mount"

# Every endpoint of the contract.
expect 200 "$(code GET /healthz)" "GET /healthz"
expect 200 "$(code HEAD /healthz -I)" "HEAD /healthz"
expect 200 "$(code GET /readyz)" "GET /readyz"
expect 200 "$(code HEAD /readyz -I)" "HEAD /readyz"
metrics=$(curl -s --max-time 5 "http://127.0.0.1:$SB_PORT/metrics" || true)
expect 200 "$(code GET /metrics)" "GET /metrics"
expect yes "$(printf '%s' "$metrics" | grep -q '^http_requests_total{' && echo yes || echo no)" "/metrics has http_requests_total"
expect yes "$(printf '%s' "$metrics" | grep -q '^process_open_fds ' && echo yes || echo no)" "/metrics has process metrics (/proc readable)"
expect yes "$(printf '%s' "$metrics" | grep -qF "revision=\"$REV\"" && echo yes || echo no)" "sremini_build_info revision = build ARG"
expect 200 "$(code GET /work)" "GET /work"
expect 200 "$(code HEAD /work -I)" "HEAD /work"
expect 200 "$(code GET '/work?cpu_ms=5')" "GET /work?cpu_ms=5"
expect 400 "$(code GET '/work?cpu_ms=abc')" "GET /work?cpu_ms=abc"
expect 200 "$(code POST /fail/work)" "POST /fail/work"
expect 500 "$(code GET /work)" "GET /work while failing"
expect 200 "$(code POST /recover/work)" "POST /recover/work"
expect 200 "$(code GET /work)" "GET /work after recovery"
expect 400 "$(code GET '/fail/work?ratio=2')" "GET /fail/work?ratio=2"
expect 200 "$(code POST /fail/ready)" "POST /fail/ready"
expect 503 "$(code GET /readyz)" "GET /readyz after /fail/ready"
expect 200 "$(code GET /healthz)" "GET /healthz while unready"
expect 200 "$(code POST /recover/ready)" "POST /recover/ready"
expect 200 "$(code GET /readyz)" "GET /readyz after /recover/ready"
expect 404 "$(code GET /no-such-path)" "GET /no-such-path"
expect 405 "$(code POST /healthz)" "POST /healthz"
expect 405 "$(code HEAD /fail/ready -I)" "HEAD /fail/ready"
hdrs=$(curl -s -D - -o /dev/null --max-time 5 "http://127.0.0.1:$SB_PORT/healthz" | tr -d '\r' | tr 'A-Z' 'a-z')
for h in content-length content-type date x-request-id; do
  expect yes "$(printf '%s\n' "$hdrs" | grep -q "^$h: " && echo yes || echo no)" "header $h"
done
allow=$(curl -s -D - -o /dev/null --max-time 5 -X POST "http://127.0.0.1:$SB_PORT/healthz" | tr -d '\r' | grep -i '^allow:' || true)
expect yes "$([ -n "$allow" ] && echo yes || echo no)" "405 carries Allow ($allow)"

# The HEALTHCHECK command, in its own locked-down sandbox (same restrictions, separate PID namespace).
probe() {
  $SUDO env -i ${RUNNER:+SANDBOX_RUNNER="$RUNNER"} unshare --mount --pid --fork --kill-child --propagation private \
    /bin/bash "$SANDBOX" "$WORK/probe-root-$1" "$BIN" probe "$2" >/dev/null 2>&1 && echo 0 || echo $?
}
mkdir -p "$WORK/probe-root-1" "$WORK/probe-root-2" "$WORK/probe-root-3"
expect 0 "$(probe 1 "http://127.0.0.1:$SB_PORT/healthz")" "probe /healthz (HEALTHCHECK) exit"
expect 1 "$(probe 2 "http://127.0.0.1:$SB_PORT/no-such-path")" "probe of a 404 exit"
$SUDO env -i ${RUNNER:+SANDBOX_RUNNER="$RUNNER"} unshare --mount --pid --fork --kill-child --propagation private /bin/bash "$SANDBOX" "$WORK/probe-root-3" "$BIN" probe \
  "http://127.0.0.1:$(free_port)/healthz" >/dev/null 2>&1 && pc=0 || pc=$?
expect 1 "$pc" "probe of a closed port exit"

# SIGTERM to PID 1 with /work in flight: the request completes, exit 0.
curl -s -o "$WORK/inflight.out" -w '%{http_code}' --max-time 10 "http://127.0.0.1:$SB_PORT/work" >"$WORK/inflight.code" &
cpid=$!
pids+=("$cpid")
sleep 0.02
$SUDO kill -TERM "$SB_CHILD"
sleep 0.1
expect 503 "$(code GET /readyz)" "GET /readyz after SIGTERM"
wait "$cpid" || true
expect 200 "$(cat "$WORK/inflight.code")" "in-flight /work across SIGTERM"
rc=0
for ((i = 0; i < 100; i++)); do alive "$SB_PID" || break; sleep 0.05; done # <= 5 s
if alive "$SB_PID"; then rc=timeout; else wait "$SB_PID" || rc=$?; fi
expect 0 "$rc" "exit status after SIGTERM as PID 1"

# The /panic drill: the process dies with a non-zero status within 1 s.
sandbox_start panic PORT=0 WORK_DELAY_MS=50 DRILLS=on
t0=$(date +%s%N)
code POST /panic >/dev/null
for ((i = 0; i < 40; i++)); do alive "$SB_PID" || break; sleep 0.05; done # <= 2 s
if alive "$SB_PID"; then prc=alive; else wait "$SB_PID" && prc=0 || prc=$?; fi
ms=$((($(date +%s%N) - t0) / 1000000))
expect nonzero "$([ "$prc" != 0 ] && [ "$prc" != alive ] && echo nonzero || echo "$prc")" "exit after /panic (${ms} ms)"
[ "$fails" -eq 0 ] || die "$fails container-contract assertions failed"

# ---- 4. the final stage as an image (buildah) ------------------------------------------------------------------------
say "image: buildah FROM scratch, chroot isolation, no registry, config from the Dockerfile"
python3 "$PY" dockerfile "$REV" >"$WORK/dockerfile.json" || die "cannot parse the Dockerfile's final stage"
# distroless static nonroot's layout, minus CA certificates and tzdata (sre-mini makes no TLS calls, logs UTC).
mkdir -p "$WORK/layout/tmp" "$WORK/layout/etc" "$WORK/layout/home/nonroot"
chmod 1777 "$WORK/layout/tmp"
chmod 0700 "$WORK/layout/home/nonroot"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$WORK/layout/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$WORK/layout/etc/group"
cfg=$(python3 "$PY" buildah-config "$WORK/dockerfile.json") || die "cannot derive the image config"
mapfile -t cfg_args <<<"$cfg"
ctr=$("${BUILDAH[@]}" from --name "sre-mini-contract-$$" scratch) || die "buildah from scratch failed"
"${BUILDAH[@]}" copy --quiet "$ctr" "$WORK/layout/" / >/dev/null || die "buildah copy (layout) failed"
cmnt=$("${BUILDAH[@]}" mount "$ctr") || die "buildah mount failed"
$SUDO chown 65532:65532 "$cmnt/home/nonroot" # as distroless: the nonroot user's home is its own
"${BUILDAH[@]}" umount "$ctr" >/dev/null
"${BUILDAH[@]}" copy --quiet --chown 0:0 --chmod 0555 "$ctr" "$BIN" /sre-mini >/dev/null || die "buildah copy (binary) failed"
"${BUILDAH[@]}" config --os linux --arch "$ARCH" "${cfg_args[@]}" "$ctr" || die "buildah config failed"
"${BUILDAH[@]}" commit --quiet --format docker --rm "$ctr" "$IMAGE" >/dev/null || die "buildah commit failed"
"${BUILDAH[@]}" inspect --type image "$IMAGE" >"$WORK/inspect.json" || die "buildah inspect failed"
python3 "$PY" image "$WORK/inspect.json" "$WORK/dockerfile.json" || die "the image config does not match the contract"
# The filesystem: exactly the runtime layout, no shell or any other executable but /sre-mini.
ctr2=$("${BUILDAH[@]}" from "$IMAGE") || die "buildah from $IMAGE failed"
mnt=$("${BUILDAH[@]}" mount "$ctr2") || die "buildah mount failed"
listing=$($SUDO find "$mnt" -mindepth 1 -printf '%P %m %u:%g\n' | sort)
"${BUILDAH[@]}" umount "$ctr2" >/dev/null
"${BUILDAH[@]}" rm "$ctr2" >/dev/null
"${BUILDAH[@]}" rmi "$IMAGE" >/dev/null
printf '%s\n' "$listing" | sed 's/^/  /'
printf '%s\n' "$listing" | awk '{ print $1 }' | grep -qE '(^|/)(sh|bash|dash|ash|busybox)$' && die "the image contains a shell"
expect "sre-mini 555 root:root" "$(printf '%s\n' "$listing" | grep '^sre-mini ')" "image /sre-mini mode and owner"
expect "tmp 1777 root:root" "$(printf '%s\n' "$listing" | grep '^tmp ')" "image /tmp"
expect "home/nonroot 700 65532:65532" "$(printf '%s\n' "$listing" | grep '^home/nonroot ')" "image /home/nonroot"
expect "etc etc/group etc/passwd home home/nonroot sre-mini tmp" "$(printf '%s\n' "$listing" | awk '{ print $1 }' | tr '\n' ' ' | sed 's/ $//')" "image file list (no shell)"
[ "$fails" -eq 0 ] || die "$fails image assertions failed"

say "container contract: static binary, locked-down run and image config all hold"
