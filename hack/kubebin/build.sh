#!/usr/bin/env bash
# Builds kube-apiserver, kube-scheduler and etcd from the Go modules pinned in
# this directory's go.mod into a cache directory keyed on the hash of go.sum
# (and of the tiny mains), then prints that directory: use it as
# KUBEBUILDER_ASSETS for envtest.
#
#   export KUBEBUILDER_ASSETS="$(hack/kubebin/build.sh)"
#
# A warm cache returns at once. Override the location with KUBEBIN_CACHE
# (the parent of the hash directories).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

hash="$(cat go.sum cmd/*/main.go | sha256sum | cut -c1-16)"
root="${KUBEBIN_CACHE:-${XDG_CACHE_HOME:-${HOME:-/root}/.cache}/couchwatch/kubebin}"
out="$root/$hash"
bins=(kube-apiserver kube-scheduler etcd)

complete() {
	for b in "${bins[@]}"; do
		[ -x "$out/$b" ] || return 1
	done
}

if complete; then
	echo "$out"
	exit 0
fi

mkdir -p "$root"
tmp="$(mktemp -d "$root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"

version="v1.37.2"
ldflags="-s -w"
ldflags+=" -X k8s.io/component-base/version.gitVersion=$version"
ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=37"
ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"

start=$SECONDS
echo "kubebin: building ${bins[*]} into $out (cold: several minutes)" >&2
# One go build for all three: shared packages compile once, in parallel.
nice -n 10 go build -mod=readonly -trimpath -ldflags="$ldflags" -o "$tmp/" ./cmd/...
echo "kubebin: built in $((SECONDS - start))s" >&2

# Publish atomically: a concurrent build of the same hash wins or loses as a whole.
if ! mv -T "$tmp" "$out" 2>/dev/null; then
	complete || { echo "kubebin: $out exists but is incomplete" >&2; exit 1; }
fi
trap - EXIT
echo "$out"
