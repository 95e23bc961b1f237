#!/usr/bin/env bash
# Runs every couchwatch test on a Debian machine, installing what they need first:
# HAProxy (real integration tests), promtool (Debian's prometheus: metric lint and alert
# unit tests), Go, and a real Kubernetes control plane built from Go modules (cached);
# gofmt, go vet and staticcheck first. With CI=true (.ci/run) a test whose program is
# missing fails; without it, it is skipped with a message (internal/testenv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. hack/lib.sh

ensure_go
ensure_cmd haproxy haproxy
ensure_cmd promtool prometheus
ensure_cmd docker-compose docker-compose
ensure_cmd chromium chromium

STATICCHECK_VERSION=v0.8.2

start=$SECONDS
echo "== kube-apiserver, kube-scheduler, etcd (built from Go modules, cached)"
KUBEBUILDER_ASSETS="$(hack/kubebin/build.sh)"
export KUBEBUILDER_ASSETS
echo "   $KUBEBUILDER_ASSETS ($((SECONDS - start))s)"

echo "== helm (built from its Go module, cached)"
HELM="$(hack/helmbin.sh)"
export HELM

echo "== gofmt, go vet"
unformatted="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"
if [ -n "$unformatted" ]; then
	echo "gofmt would change:"; echo "$unformatted"; exit 1
fi
go vet ./...

echo "== staticcheck $STATICCHECK_VERSION"
# Pinned: a new release adds checks, and CI must not turn red on its own.
go run "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ./...

echo "== go test -race"
go test -race -count=1 -timeout 40m ./... 2>&1 | tee /tmp/couchwatch-test.log
echo "== all tests passed in $((SECONDS - start))s"
