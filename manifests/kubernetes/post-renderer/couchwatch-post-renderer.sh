#!/bin/sh
# Helm post-renderer: adds couchwatch to what cht-chart renders.
#
#   helm upgrade --install cht medic/cht-chart -n <ns> -f values.yaml \
#     --post-renderer manifests/kubernetes/post-renderer/couchwatch-post-renderer.sh
#
# Reads Helm's rendered manifests on stdin and writes them, patched, on stdout, using the
# same kustomize Components as manifests/kubernetes/example. Settings (environment):
#   COUCHWATCH_MODE       agent (default: step 1 of the migration) or runtime (step 2)
#   COUCHWATCH_IMAGE      image for the couchwatch container (default couchwatch:dev)
#   COUCHWATCH_NAMESPACE  namespace of the release (default: HELM_NAMESPACE if Helm sets
#                         it); needed so the RBAC bindings name the right ServiceAccount
#   COUCHWATCH_REBALANCE  true to evict stateless CHT pods from flagged nodes (adds the
#                         pods/eviction binding); default false
#   KUSTOMIZE             command that builds a kustomization (default "kubectl kustomize")
set -eu

here=$(cd "$(dirname "$0")" && pwd)
mode=${COUCHWATCH_MODE:-agent}
image=${COUCHWATCH_IMAGE:-couchwatch:dev}
namespace=${COUCHWATCH_NAMESPACE:-${HELM_NAMESPACE:-}}
kustomize=${KUSTOMIZE:-kubectl kustomize}

# Split "name:tag" (a registry port before the last "/" is not a tag).
name=$image
tag=
case "${image##*/}" in
*:*)
	name=${image%:*}
	tag=${image##*:}
	;;
esac

# kustomize refuses absolute paths to components: reach them through a symlink.
case "$mode" in
agent) components="  - couchwatch/base" ;;
runtime) components="  - couchwatch/base
  - couchwatch/components/runtime-api" ;;
*)
	echo "couchwatch-post-renderer: COUCHWATCH_MODE must be agent or runtime, not \"$mode\"" >&2
	exit 2
	;;
esac
case "${COUCHWATCH_REBALANCE:-false}" in
true) components="$components
  - couchwatch/components/rebalance" ;;
false) ;;
*)
	echo "couchwatch-post-renderer: COUCHWATCH_REBALANCE must be true or false, not \"$COUCHWATCH_REBALANCE\"" >&2
	exit 2
	;;
esac

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

ln -s "$here/.." "$work/couchwatch"
cat >"$work/helm-output.yaml"
{
	echo "apiVersion: kustomize.config.k8s.io/v1beta1"
	echo "kind: Kustomization"
	if [ -n "$namespace" ]; then
		echo "namespace: $namespace"
	fi
	echo "resources:"
	echo "  - helm-output.yaml"
	echo "components:"
	echo "$components"
	echo "images:"
	echo "  - name: couchwatch"
	echo "    newName: $name"
	if [ -n "$tag" ]; then
		echo "    newTag: \"$tag\""
	fi
} >"$work/kustomization.yaml"

$kustomize "$work"
