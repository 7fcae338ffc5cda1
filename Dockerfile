# syntax=docker/dockerfile:1
# dirvol image, for those who build with a container engine. `make image`
# builds the same image without one (test/e2e/dirvolimage): the same Debian
# packages (apt-get line below, NodePackages there) and the same binary path;
# TestDockerfileMatchesRecipe keeps the two in step.

# Build stage: a static binary; CGO is off, so the final stage needs no Go.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w -X main.version=${VERSION}" -o /out/dirvol ./cmd/driver

# Final stage: not distroless, because k8s.io/mount-utils runs the mount and
# umount binaries, and image pools need blkid, losetup and mkfs.btrfs.
FROM debian:12.12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends mount util-linux btrfs-progs \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/dirvol /usr/local/bin/dirvol
ENTRYPOINT ["/usr/local/bin/dirvol"]
