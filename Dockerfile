# syntax=docker/dockerfile:1
# dirvol image: the driver plus the host tools its node code runs.

# Build stage: a static binary; CGO is off, so the final stage needs no Go.
FROM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/dirvol ./cmd/driver

# Final stage: not distroless, because k8s.io/mount-utils runs the mount and
# umount binaries, and pools on loop devices and btrfs need losetup and btrfs.
FROM debian:12.12-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends mount util-linux btrfs-progs xfsprogs ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/dirvol /usr/local/bin/dirvol
ENTRYPOINT ["/usr/local/bin/dirvol"]
