#!/usr/bin/env bash
# Runs every couchwatch test on a Debian machine, installing what they need first:
# HAProxy (real integration tests), promtool (Debian's prometheus: metric lint and alert
# unit tests), Go, and a real Kubernetes control plane built from Go modules (cached).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. hack/lib.sh

ensure_go
ensure_cmd haproxy haproxy
ensure_cmd promtool prometheus

start=$SECONDS
echo "== kube-apiserver, kube-scheduler, etcd (built from Go modules, cached)"
KUBEBUILDER_ASSETS="$(hack/kubebin/build.sh)"
export KUBEBUILDER_ASSETS
echo "   $KUBEBUILDER_ASSETS ($((SECONDS - start))s)"

echo "== gofmt, go vet"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== go test -race"
go test -race -count=1 -timeout 40m ./... 2>&1 | tee /tmp/couchwatch-test.log
echo "== all tests passed in $((SECONDS - start))s"
