# syntax=docker/dockerfile:1.7
#
# reel and its nginx edge, for linux/amd64 and linux/arm64:
#
#   docker buildx build --platform linux/amd64,linux/arm64 --target reel -t reel .
#   docker buildx build --platform linux/amd64,linux/arm64 --target edge -t reel-edge .
#
# `docker compose build` builds both for the local platform. Rust is
# cross-compiled on the build machine's own platform (no emulation), so an
# arm64 image builds as fast as an amd64 one. Stages:
#
#   web    npm ci: hls.js and tus-js-client for the web page (static/vendor/)
#   build  cargo build --release --locked, for the target platform; the web page
#          (with hls.js) is compiled into the binary
#   edge   official nginx + nginx/reel.conf.template + the web page
#   reel   debian:bookworm-slim + ffmpeg + the reel binary (the default target)

ARG RUST_VERSION=1.95
ARG NODE_VERSION=22
ARG NGINX_VERSION=1.27
# One uid for reel and for nginx's workers, so nginx can always read what reel
# writes (it sends the originals through X-Accel-Redirect).
ARG REEL_UID=10001

# ---- web: vendor files for the page ------------------------------------------
FROM --platform=$BUILDPLATFORM node:${NODE_VERSION}-bookworm-slim AS web
WORKDIR /web
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm \
    npm ci --ignore-scripts --no-audit --no-fund
COPY static/ ./static/
RUN mkdir -p static/vendor \
    && cp node_modules/hls.js/dist/hls.min.js static/vendor/hls.min.js \
    && cp node_modules/tus-js-client/dist/tus.min.js static/vendor/tus.min.js

# ---- build: the reel binary ----------------------------------------------------
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS build
ARG TARGETARCH
ARG BUILDARCH
# Cross linkers for the other architecture; for the native one these names
# are Debian's own gcc (e.g. x86_64-linux-gnu-gcc on amd64).
ENV CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER=x86_64-linux-gnu-gcc \
    CC_x86_64_unknown_linux_gnu=x86_64-linux-gnu-gcc \
    CARGO_TERM_COLOR=never
RUN set -eux; \
    case "$TARGETARCH" in \
      amd64) triple=x86_64-unknown-linux-gnu; gnu=x86-64-linux-gnu ;; \
      arm64) triple=aarch64-unknown-linux-gnu; gnu=aarch64-linux-gnu ;; \
      *) echo "unsupported TARGETARCH=$TARGETARCH (amd64 and arm64 are)" >&2; exit 1 ;; \
    esac; \
    if [ "$TARGETARCH" != "$BUILDARCH" ]; then \
      apt-get update; \
      apt-get install -y --no-install-recommends "gcc-$gnu" "libc6-dev-$TARGETARCH-cross"; \
      rm -rf /var/lib/apt/lists/*; \
    fi; \
    rustup target add "$triple"; \
    echo "$triple" > /rust-target
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY migrations/ ./migrations/
COPY --from=web /web/static/ ./static/
COPY src/ ./src/
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eux; \
    triple="$(cat /rust-target)"; \
    cargo build --release --locked --target "$triple"; \
    cp "target/$triple/release/reel" /reel

# ---- edge: nginx in front of reel -----------------------------------------------
FROM nginx:${NGINX_VERSION}-alpine AS edge
ARG REEL_UID
# Workers run as reel's uid (see REEL_UID above); the master stays root to bind.
RUN set -eux; \
    addgroup -S -g "$REEL_UID" reel; \
    adduser -S -D -H -u "$REEL_UID" -G reel -s /sbin/nologin reel; \
    sed -i 's/^user .*;/user reel;/' /etc/nginx/nginx.conf; \
    grep -q '^user reel;' /etc/nginx/nginx.conf; \
    rm -f /etc/nginx/conf.d/default.conf
# The image's entrypoint renders /etc/nginx/templates/*.template into conf.d/
# with envsubst, substituting only variables matching NGINX_ENVSUBST_FILTER.
COPY nginx/reel.conf.template /etc/nginx/templates/reel.conf.template
COPY --from=web /web/static/ /usr/share/reel/static/
ENV NGINX_ENVSUBST_FILTER="^(NGINX|REEL)_" \
    NGINX_LISTEN=8080 \
    NGINX_RESOLVER="127.0.0.11 valid=10s" \
    NGINX_UPLOAD_RATE=10r/m \
    NGINX_UPLOAD_BURST=5 \
    REEL_UPSTREAM=reel:8080 \
    REEL_MEDIA_DIR=/media \
    REEL_STATIC_DIR=/usr/share/reel/static \
    REEL_MAX_UPLOAD_BYTES=4g
EXPOSE 8080
# The page comes from disk: healthy means nginx serves, whatever reel is doing.
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
    CMD wget -q -O /dev/null http://127.0.0.1:8080/style.css || exit 1

# ---- reel: the app (default target) ---------------------------------------------
FROM debian:bookworm-slim AS reel
ARG REEL_UID
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ffmpeg ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid "$REEL_UID" reel; \
    useradd --system --uid "$REEL_UID" --gid reel --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin reel; \
    mkdir -p /media; \
    chown reel:reel /media
# The page is built into the binary: no static folder here.
COPY --from=build /reel /usr/local/bin/reel
ENV REEL_LISTEN=0.0.0.0:8080 \
    REEL_MEDIA_DIR=/media \
    REEL_ACCEL_REDIRECT=true \
    REEL_LOG_FORMAT=json
# A fresh named volume takes this folder's owner (reel) on first use.
VOLUME ["/media"]
USER reel
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["reel"]
CMD ["serve"]
