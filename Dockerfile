# syntax=docker/dockerfile:1
# sre-mini container image: a static musl binary on distroless `static` (no shell, no package manager, no libc).
#
#   docker build --build-arg SRE_MINI_REVISION="$(git rev-parse HEAD)" -t sre-mini:dev .
#   docker buildx build --platform linux/amd64,linux/arm64 ...      (both shipped architectures, one index)
#   docker run --rm --read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges -p 8080:8080 sre-mini:dev
#
# Both base images are pinned by the digest of their multi-arch index; the tag beside it says what the image is,
# the digest decides which bytes are used. The builder digest also pins the exact Rust toolchain (1.95). To update:
#   docker buildx imagetools inspect rust:1.95-slim-bookworm                  (or: crane digest <image:tag>)
#   docker buildx imagetools inspect gcr.io/distroless/static-debian12:nonroot
# and change tag and digest together in one reviewed commit (docs/kubernetes.md, "The container image").

# ---- build: static binary ---------------------------------------------------------------------------------------
# The builder runs natively on the build machine ($BUILDPLATFORM) and cross-compiles for the image's $TARGETARCH:
# a static musl binary needs no emulation to build, and rust-lld (in the toolchain; .cargo/config.toml) links the
# arm64 one without a cross C toolchain. Only amd64 and arm64 are shipped (k8s.yaml's node affinity says so).
FROM --platform=$BUILDPLATFORM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS build
ARG TARGETARCH
# The musl standard library for this exact toolchain (rustup checks it against the signed channel manifest), and
# cargo-auditable (pinned, --locked), which embeds the dependency list in the binary (.dep-v0) so that Trivy, Grype
# and `cargo audit bin` can see the Rust dependencies inside the image.
RUN case "${TARGETARCH}" in \
      amd64) echo x86_64-unknown-linux-musl >/rust-target ;; \
      arm64) echo aarch64-unknown-linux-musl >/rust-target ;; \
      *) echo "unsupported TARGETARCH ${TARGETARCH}: only amd64 and arm64 are shipped" >&2; exit 1 ;; \
    esac \
    && rustup target add "$(cat /rust-target)" \
    && cargo install --locked cargo-auditable --version 0.7.7
# Git revision baked into sremini_build_info (read by build.rs) and the OCI label below.
ARG SRE_MINI_REVISION=unknown
WORKDIR /build/sre-mini
# The context is an allow-list (.dockerignore): manifest, lockfile, build script and sources only.
COPY . .
# The command and flags of scripts/reproducible-build.sh: --locked (exactly Cargo.lock, checksums included),
# static musl, no build path in the binary, a fixed environment.
# RUSTFLAGS replaces .cargo/config.toml's per-target rustflags: they are read from there and appended, with the
# awk of scripts/lib.sh target_rustflags.
RUN TARGET="$(cat /rust-target)" \
    && EXTRA="$(awk -v t="[target.${TARGET}]" '$0==t{s=1;next} /^\[/{s=0} s&&/^rustflags *=/{sub(/^[^[]*\[/,"");sub(/\].*/,"");gsub(/"/,"");gsub(/, */," ");print}' .cargo/config.toml)" \
    && TZ=UTC LC_ALL=C CARGO_INCREMENTAL=0 SRE_MINI_REVISION="${SRE_MINI_REVISION}" \
    RUSTFLAGS="--remap-path-prefix=/build/sre-mini=/build/sre-mini --remap-path-prefix=${CARGO_HOME}=/cargo ${EXTRA}" \
    cargo auditable build --release --locked --target "${TARGET}" \
    && install -D -m 0555 "target/${TARGET}/release/sre-mini" /out/sre-mini

# ---- runtime: distroless static, nonroot ----------------------------------------------------------------------
FROM gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
ARG SRE_MINI_REVISION=unknown
LABEL org.opencontainers.image.title="sre-mini" \
      org.opencontainers.image.description="A reference HTTP/1.1 workload for Kubernetes: std-only, bounded, observable, drillable." \
      org.opencontainers.image.source="https://github.com/sre-mini/sre-mini" \
      org.opencontainers.image.revision="${SRE_MINI_REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
# Owned by root and read/execute only: the service user cannot replace its own binary even on a writable root.
COPY --from=build --chown=0:0 /out/sre-mini /sre-mini
# distroless `nonroot` (uid/gid 65532), numeric so runAsNonRoot can verify it without /etc/passwd.
USER 65532:65532
EXPOSE 8080
# No shell and no curl in the image: the binary probes itself (exit 0 on 2xx, 1 otherwise, 2 s timeout).
# Docker and Podman use this; Kubernetes ignores it and uses the probes in k8s.yaml. Assumes the default PORT.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/sre-mini", "probe", "http://127.0.0.1:8080/healthz"]
# Exec form: the binary is PID 1 and receives SIGTERM directly (no shell in between to swallow it).
ENTRYPOINT ["/sre-mini"]
