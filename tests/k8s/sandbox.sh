#!/bin/bash
# sandbox.sh ROOTDIR BINARY [ARGS...]: run BINARY the way k8s.yaml runs the container, without a container runtime.
# Run as root inside `unshare --mount --pid --fork --kill-child --propagation private` (scripts/container-contract.sh):
#   - a minimal root on a private tmpfs: /sre-mini (root-owned, 0555), /etc/passwd+group and /home/nonroot
#     (uid 65532, as in distroless), /dev/{null,zero,random,urandom}, /proc (this PID namespace), and setpriv with its two libraries
#     (the launcher: it execs /sre-mini and is gone; there is no shell in this root);
#   - the root remounted read-only, a 16 MiB tmpfs at /tmp (the emptyDir of k8s.yaml);
#   - setpriv: uid/gid 65532, no supplementary groups, inheritable/ambient/bounding capabilities all dropped,
#     no-new-privs; /sre-mini is PID 1, as with the Dockerfile's exec-form ENTRYPOINT.
# With SANDBOX_RUNNER (an absolute path to a static emulator such as qemu-aarch64-static) the emulator is installed
# at the same path in the root and runs /sre-mini: it is PID 1 and the binary runs inside its process.
# Before exec it proves that writing outside /tmp fails because the root is read-only (EROFS, even for root with
# all capabilities, and for uid 65532 in its own home directory) and that /tmp is writable for uid 65532.
set -euo pipefail
export PATH=/usr/sbin:/usr/bin
R=$1 BIN=$2
shift 2
RUNNER="${SANDBOX_RUNNER:-}"
unset SANDBOX_RUNNER
PRIV=(--reuid 65532 --regid 65532 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs)

mount -t tmpfs -o size=64m,mode=0755 sre-mini-root "$R"
mkdir -p "$R"/{proc,tmp,dev,etc,usr/bin,usr/lib,usr/lib64}
install -d -o 65532 -g 65532 -m 0700 "$R/home" "$R/home/nonroot"
chown 0:0 "$R/home"
chmod 0755 "$R/home"
ln -s usr/lib "$R/lib"
ln -s usr/lib64 "$R/lib64"
install -o 0 -g 0 -m 0555 "$BIN" "$R/sre-mini"
install -m 0755 /usr/bin/setpriv "$R/usr/bin/setpriv"
if [ -n "$RUNNER" ]; then
  mkdir -p "$R$(dirname "$RUNNER")"
  install -o 0 -g 0 -m 0555 "$RUNNER" "$R$RUNNER"
fi
for lib in $(ldd /usr/bin/setpriv | grep -oE '/[^ ]+'); do
  mkdir -p "$(dirname "$R$lib")"
  cp -L "$lib" "$R$lib"
done
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$R/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$R/etc/group"
for d in null zero random urandom; do
  touch "$R/dev/$d"
  mount --bind "/dev/$d" "$R/dev/$d"
done
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
mount -t tmpfs -o size=16m,mode=1777,nosuid,nodev sre-mini-tmp "$R/tmp"
mount -o remount,ro "$R"

# Write tests: the file system must say "Read-only file system", not merely "Permission denied".
erofs() { grep -q 'Read-only file system' <<<"$1" && echo denied-erofs || echo "ALLOWED-or-other:${1:-no error}"; }
out=$(/usr/bin/touch "$R/written-by-root" 2>&1) && out=""
echo "SANDBOX write-root-as-root=$(erofs "$out")" >&2
out=$(setpriv "${PRIV[@]}" -- /usr/bin/touch "$R/home/nonroot/written-by-65532" 2>&1) && out=""
echo "SANDBOX write-home-as-65532=$(erofs "$out")" >&2
if setpriv "${PRIV[@]}" -- /usr/bin/touch "$R/tmp/written-by-65532" 2>/dev/null; then
  echo "SANDBOX write-tmp=ok" >&2
  rm -f "$R/tmp/written-by-65532"
else
  echo "SANDBOX write-tmp=FAILED" >&2
fi
if [ -e "$R/bin/sh" ] || [ -e "$R/usr/bin/sh" ]; then echo "SANDBOX shell=present" >&2; else echo "SANDBOX shell=absent" >&2; fi

exec chroot "$R" /usr/bin/setpriv "${PRIV[@]}" -- ${RUNNER:+"$RUNNER"} /sre-mini "$@"
