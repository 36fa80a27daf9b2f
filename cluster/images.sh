#!/usr/bin/env bash
# Builds an image with buildah (vfs storage, chroot isolation, no daemon) and pushes it to the cluster's registry;
# prints the reference by digest that a manifest uses. No image can be pulled here, so every one is built locally
# from pinned inputs, and docs/cluster.md says how each differs from the upstream image it stands in for.
#   bash cluster/images.sh pause             # the pod sandbox: Kubernetes' own pause.c, compiled static
#   bash cluster/images.sh base              # distroless static-debian12:nonroot's files, from Debian's packages
#   bash cluster/images.sh sre-mini BINARY   # the Dockerfile's runtime stage over BINARY, on the base above
#   bash cluster/images.sh program NAME      # a program cluster/build.sh built (traefik, operator, ...), on the base
#   bash cluster/images.sh debian-program TOOL PATH NAME [DIR...]  # a pinned Debian program (PINS) with its glibc
#   bash cluster/images.sh busybox           # Debian's static busybox: the node-contention drill's CPU hog
# The registry must be up (cluster/up.sh starts it). The reference is also written to $KUBE_STATE/images/NAME.
. "$(dirname "$0")/../scripts/lib.sh"
. "$ROOT/cluster/lib.sh"

# The Debian packages whose files make the base, pinned (docs/cluster.md, "Images").
BASE_DEBS=(ca-certificates=20250419~deb12u2 tzdata=2026f-0+deb12u1 netbase=6.4 base-files=12.4+deb12u15)

BUILDAH=(buildah --root "$KUBE_STATE/buildah" --runroot "$KUBE_RUN/buildah" --storage-driver vfs)
export BUILDAH_ISOLATION=chroot BUILDAH_FORMAT=docker
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sre-mini-image.XXXXXX")
ctr=""
cleanup() {
  [ -n "$ctr" ] && "${BUILDAH[@]}" rm "$ctr" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT

# from IMAGE: a working container of IMAGE ("scratch" or a local image); sets ctr and mnt.
from() {
  ctr=$("${BUILDAH[@]}" from --quiet "$1") || die "buildah from $1 failed"
  mnt=$("${BUILDAH[@]}" mount "$ctr") || die "buildah mount failed"
}

# publish NAME TAG [CONFIG ARGS...]: commit the working container as NAME:TAG, push it, print NAME:TAG@DIGEST.
# Docker's image format, as `docker build` writes it: the OCI format has no HEALTHCHECK.
publish() {
  local name=$1 tag=$2
  shift 2
  "${BUILDAH[@]}" config --os linux --arch amd64 "$@" "$ctr" || die "buildah config of $name failed"
  "${BUILDAH[@]}" commit --quiet --format docker --rm "$ctr" "localhost/$name:$tag" >/dev/null || die "buildah commit of $name failed"
  ctr=""
  "${BUILDAH[@]}" push --quiet --tls-verify=false --digestfile "$WORK/digest" "localhost/$name:$tag" \
    "docker://$REGISTRY/$name:$tag" || die "buildah push of $name to $REGISTRY failed"
  local ref="$REGISTRY/$name:$tag@$(cat "$WORK/digest")"
  mkdir -p "$KUBE_STATE/images"
  echo "$ref" >"$KUBE_STATE/images/${name##*/}"
  echo "$ref"
}

# from_base: a working container of the base image (built first if this cluster has none yet).
from_base() {
  local ref
  ref=$(cat "$KUBE_STATE/images/distroless-static" 2>/dev/null) || ref=$(bash "$0" base | tail -n1)
  ref=$(echo "$ref" | sed 's/:[^:/@]*@/@/') # buildah pulls by digest alone: it refuses name:tag@digest
  "${BUILDAH[@]}" pull --quiet --tls-verify=false "docker://$ref" >/dev/null || die "cannot read $ref back"
  from "$ref"
}

# base_rootfs DIR: distroless static's layout in DIR, from the pinned Debian packages.
base_rootfs() {
  local dir=$1 deb
  mkdir -p "$WORK/debs"
  (cd "$WORK/debs" && apt-get download -qq "${BASE_DEBS[@]}" >/dev/null 2>&1) \
    || die "apt-get download ${BASE_DEBS[*]} failed (apt-cache policy shows what this Debian offers; update the pin)"
  for deb in "$WORK"/debs/*.deb; do dpkg-deb -x "$deb" "$dir"; done
  # ca-certificates ships the certificates; its maintainer script makes the bundle that distroless carries.
  mkdir -p "$dir/etc/ssl/certs"
  find "$dir/usr/share/ca-certificates" -name '*.crt' | sort | xargs cat >"$dir/etc/ssl/certs/ca-certificates.crt"
  # Only what distroless keeps of base-files: os-release and the license texts.
  find "$dir/etc" -mindepth 1 -maxdepth 1 ! -name ssl ! -name os-release ! -name services ! -name protocols \
    ! -name ethertypes ! -name rpc -exec rm -rf {} +
  rm -rf "$dir/usr/bin" "$dir/usr/sbin" "$dir/usr/share/base-files" "$dir/usr/share/lintian" "$dir/usr/share/man" \
    "$dir/var" "$dir/usr/lib/os-release.d"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n' >"$dir/etc/group"
  mkdir -p "$dir/tmp" "$dir/root" "$dir/home/nonroot"
  chmod 1777 "$dir/tmp"
  chmod 0700 "$dir/root" "$dir/home/nonroot"
  chown 65532:65532 "$dir/home/nonroot"
}

case "${1:-}" in
  pause)
    need_apt gcc gcc
    src=$(cd "$CLUSTER_DIR/build/kubernetes" && go mod download -json k8s.io/kubernetes | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
    tag=$(sed -n 's/^TAG ?= //p' "$src/build/pause/Makefile")
    [ -n "$tag" ] || die "no TAG in $src/build/pause/Makefile"
    # The flags of build/pause/Makefile.
    gcc -Os -Wall -Werror -static -DVERSION="v$tag-sre-mini" -o "$WORK/pause" "$src/build/pause/linux/pause.c" \
      || die "gcc could not build pause.c"
    from scratch
    install -m 0755 "$WORK/pause" "$mnt/pause"
    publish sre-mini-kube/pause "$tag" --user 65535:65535 --entrypoint '["/pause"]' --cmd ''
    ;;
  base)
    from scratch
    base_rootfs "$mnt"
    publish sre-mini-kube/distroless-static "nonroot" --user 65532:65532 --workingdir /home/nonroot \
      --label "org.opencontainers.image.description=distroless static-debian12:nonroot stand-in, from Debian: ${BASE_DEBS[*]}"
    ;;
  sre-mini)
    bin=${2:?usage: images.sh sre-mini BINARY}
    [ -x "$bin" ] || die "no executable at $bin"
    (cd "$ROOT" && python3 tests/k8s/image_checks.py dockerfile "$(git rev-parse HEAD)") >"$WORK/dockerfile.json" \
      || die "cannot parse the Dockerfile's runtime stage"
    mapfile -t cfg < <(python3 "$ROOT/tests/k8s/image_checks.py" buildah-config "$WORK/dockerfile.json") \
      || die "cannot derive the image config from the Dockerfile"
    from_base
    install -o 0 -g 0 -m 0555 "$bin" "$mnt/sre-mini"
    publish sre-mini/sre-mini "$(sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)" "${cfg[@]}"
    ;;
  program)
    # A program of cluster/build.sh on the base, as uid 65532; its image is named after it.
    name=${2:?usage: images.sh program NAME}
    bin=$(find "$KUBE_CACHE"/current/*/ -maxdepth 1 -name "$name" -type f | head -n1)
    [ -x "$bin" ] || die "no program $name under $KUBE_CACHE/current (cluster/build.sh builds them)"
    # The tag is the version of the module the program's package belongs to, as the binary records it.
    version=$(go version -m "$bin" | awk '$1 == "path" {p = $2} ($1 == "mod" || $1 == "dep") && index(p "/", $2 "/") == 1 && length($2) > n {n = length($2); v = $3} END {print v}')
    [ -n "$version" ] || die "go version -m $bin names no module for its package"
    from_base
    # In /bin, where the upstream images keep it: the operator starts its config reloader by that path.
    install -D -o 0 -g 0 -m 0555 "$bin" "$mnt/bin/$name"
    publish "sre-mini-kube/$name" "$version" --user 65532:65532 --entrypoint "[\"/bin/$name\"]" --cmd ''
    ;;
  debian-program)
    # A program of a pinned Debian package (Alertmanager) on the base, with the glibc it is linked against (the files
    # distroless `base` adds to `static`) and any of the package's directories it reads at run time.
    tool=${2:?usage: images.sh debian-program TOOL PATH NAME [DIR...]} path=${3:?} name=${4:?}
    need "$tool"
    read -r _ pkg _ <<<"$(pin "$tool")"
    pkg=${pkg%%=*}
    from_base
    install -o 0 -g 0 -m 0555 "$path" "$mnt/bin/$name" -D
    ldd "$path" | grep -oE '/[^ ]+' | while read -r lib; do install -D -m 0755 "$lib" "$mnt$lib"; done
    for d in "${@:5}"; do mkdir -p "$mnt$(dirname "$d")"; cp -a "$d" "$mnt$d"; done
    publish "sre-mini-kube/$name" "$(dpkg-query -W -f='${Version}' "$pkg" | tr ':+~' '---')" \
      --user 65532:65532 --entrypoint "[\"/bin/$name\"]" --cmd ''
    ;;
  busybox)
    need busybox-static
    from scratch
    install -m 0755 /bin/busybox "$mnt/busybox"
    publish sre-mini-kube/busybox "$(dpkg-query -W -f='${Version}' busybox-static | tr ':+~' '---')" \
      --user 65532:65532 --entrypoint '["/busybox"]' --cmd ''
    ;;
  *) die "usage: images.sh pause|base|sre-mini BINARY|program NAME|debian-program TOOL PATH NAME|busybox" ;;
esac
