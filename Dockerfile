# couchwatch container image.
#
# Build:  docker build --build-arg VERSION=$(git describe --tags --always) \
#           --build-arg REVISION=$(git rev-parse HEAD) -t couchwatch:dev .
#
# .git stays out of the build context (.dockerignore), so the revision comes in as a build
# argument: it is couchwatch_build_info{revision} and the image's revision label.
#
# Stage 1 compiles a static binary (CGO_ENABLED=0); stage 2 is an empty image holding only
# that binary and the CA bundle. The runtime image has no shell and no package manager, runs
# as UID/GID 65532 and writes nothing to disk, so it works with a read-only root filesystem.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src

# Dependencies first, so source edits keep this layer cached.
COPY go.mod go.sum ./
RUN go mod download

COPY . .

ARG VERSION=dev
ARG REVISION=unknown
ARG TARGETOS=linux
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -buildvcs=false \
      -ldflags "-s -w -X main.version=${VERSION} -X main.revision=${REVISION}" \
      -o /out/couchwatch ./cmd/couchwatch

FROM scratch
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="couchwatch" \
      org.opencontainers.image.description="CouchDB node watcher that steers CHT's HAProxy" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# CA bundle for an https COUCHDB_SERVERS or a Kubernetes API behind a public CA.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /out/couchwatch /couchwatch

# 65532 is the conventional "nonroot" ID; numeric so Kubernetes can verify runAsNonRoot.
USER 65532:65532

# 9155: /metrics, /healthz, /readyz and the status page. 5555: HAProxy agent-check drop-in.
EXPOSE 9155 5555

ENTRYPOINT ["/couchwatch"]
