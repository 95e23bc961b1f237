#!/usr/bin/env bash
# Runs the couchwatch demo on a Debian machine, installing what it needs first (HAProxy,
# Go): three simulated CouchDB nodes, a real HAProxy in front of them and couchwatch
# steering it live. Type commands (stop 2, hang 3, nolb 1, load 2 1, reload, quit) and
# watch HAProxy's own state change. Without a terminal it plays a scripted tour.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. hack/lib.sh

ensure_go
ensure_cmd haproxy haproxy

bin="$(mktemp -d)"
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/couchwatch" ./cmd/couchwatch
go build -o "$bin/couchwatch-demo" ./cmd/couchwatch-demo
"$bin/couchwatch-demo" -couchwatch "$bin/couchwatch" "$@"
