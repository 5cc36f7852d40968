# syntax=docker/dockerfile:1.7
#
# MediaMesh's one binary in a static, non-root image.
#
#   docker build -t mediamesh:dev --build-arg VERSION=$(git describe --always --dirty) .
#
# Stage 1 builds with CGO disabled and the tag nodynamic, so the binary runs on an
# image without a libc: without the tag, gen2brain/webp links purego, which makes
# even a CGO_ENABLED=0 binary dynamically linked against libc (it then decodes WebP
# with its embedded WebAssembly build instead of a system libwebp);
# compose/dockerfile_test.go checks that the dependencies stay static. The last
# stage is distroless "static" running as uid 65532 (nonroot): no shell, no package
# manager, nothing to patch but the binary. The one extra file is busybox's wget,
# so the compose stack's health checks can probe /health/ready without a shell.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=linux \
    go build -tags nodynamic -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/mediamesh ./cmd/mediamesh
# The data directory (generated signing key of a single instance, stored assets of
# MEDIAMESH_BLOB=fs) and the shared key directory of the compose stack, owned by the
# runtime user so that named volumes mounted there inherit that ownership.
RUN mkdir -p /out/var/lib/mediamesh/keys /out/var/lib/mediamesh/data

FROM busybox:1.37-musl AS probe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mediamesh /usr/local/bin/mediamesh
# busybox runs the applet named by argv[0]: installed as "wget" it is wget.
COPY --from=probe /bin/busybox /usr/local/bin/wget
COPY --from=build --chown=65532:65532 /out/var/lib/mediamesh /var/lib/mediamesh
USER 65532:65532
WORKDIR /var/lib/mediamesh
ENV MEDIAMESH_HTTP_ADDR=:8080 \
    MEDIAMESH_DATA_DIR=/var/lib/mediamesh/data
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/health/live"]
ENTRYPOINT ["/usr/local/bin/mediamesh"]
CMD ["serve"]
