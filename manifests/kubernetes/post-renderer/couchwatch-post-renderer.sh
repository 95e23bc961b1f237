#!/bin/sh
# Helm post-renderer: adds couchwatch to what cht-chart renders (cht-chart 5.x from
# cht-core's scripts/build/helm, and cht-chart-4x).
#
#   helm upgrade cht <chart> -n <ns> -f values.yaml \
#     --post-renderer manifests/kubernetes/post-renderer/couchwatch-post-renderer.sh
#
# Reads Helm's rendered manifests on stdin and writes them, patched, on stdout, using the
# kustomize Components beside ../base. Settings (environment):
#   COUCHWATCH_IMAGE       image of the couchwatch container, e.g. <registry>/couchwatch:<version>
#                          (required: an unset image fails here, not as an ImagePullBackOff
#                          of CHT's HAProxy pod)
#   COUCHWATCH_MODE        agent (default: step 1 of the migration) or runtime (step 2)
#   COUCHWATCH_NAMESPACE   namespace of the release. Optional: Helm does not tell a
#                          post-renderer its -n, so the namespace is read from the rendered
#                          objects (metadata.namespace, as cht-chart-4x writes it, or the
#                          HEALTHCHECK_ADDR healthcheck.<ns>.svc... that both charts write);
#                          when set it must agree with them; when nothing names one the
#                          post-renderer refuses rather than bind RBAC in a guessed namespace
#   COUCHWATCH_PROMETHEUS_OPERATOR  true (default): PodMonitor and PrometheusRule; false:
#                          neither (no prometheus-operator CRDs needed), prometheus.io/*
#                          scrape annotations on the HAProxy pod instead
#   COUCHWATCH_GRAFANA_DASHBOARD_LABEL  label of the dashboard ConfigMap for the Grafana
#                          sidecar, key=value (default grafana_dashboard=1; Medic's
#                          observability chart: grafana_dashboard=medic-observability)
#   COUCHWATCH_REBALANCE   true to evict stateless CHT pods from flagged nodes (adds the
#                          pods/eviction binding); default false
#   KUSTOMIZE              command that builds a kustomization (default "kubectl kustomize")
#
# Cluster-scoped objects (ClusterRoles, ClusterRoleBindings) are named per instance,
# couchwatch-<namespace>, so several CHT instances (one namespace each) share a cluster.
set -eu

fail() {
	echo "couchwatch-post-renderer: $*" >&2
	exit 2
}

here=$(cd "$(dirname "$0")" && pwd)
mode=${COUCHWATCH_MODE:-agent}
image=${COUCHWATCH_IMAGE:-}
kustomize=${KUSTOMIZE:-kubectl kustomize}
prom_operator=${COUCHWATCH_PROMETHEUS_OPERATOR:-true}
dash_label=${COUCHWATCH_GRAFANA_DASHBOARD_LABEL:-grafana_dashboard=1}

[ -n "$image" ] || fail "COUCHWATCH_IMAGE is not set: set it to the couchwatch image you pushed, e.g. <registry>/couchwatch:<version>"

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
*) fail "COUCHWATCH_MODE must be agent or runtime, not \"$mode\"" ;;
esac
case "$prom_operator" in
true) components="$components
  - couchwatch/components/prometheus-operator" ;;
false) components="$components
  - couchwatch/components/scrape-annotations" ;;
*) fail "COUCHWATCH_PROMETHEUS_OPERATOR must be true or false, not \"$prom_operator\"" ;;
esac
case "${COUCHWATCH_REBALANCE:-false}" in
true) components="$components
  - couchwatch/components/rebalance" ;;
false) ;;
*) fail "COUCHWATCH_REBALANCE must be true or false, not \"$COUCHWATCH_REBALANCE\"" ;;
esac

case "$dash_label" in
*=*)
	dash_key=${dash_label%%=*}
	dash_value=${dash_label#*=}
	;;
*) fail "COUCHWATCH_GRAFANA_DASHBOARD_LABEL must be key=value (e.g. grafana_dashboard=medic-observability), not \"$dash_label\"" ;;
esac
# A Kubernetes label: [prefix/]name of [A-Za-z0-9._-], value of the same or empty.
if ! printf '%s\n' "$dash_key" | grep -Eq '^([a-z0-9.-]+/)?[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$' ||
	! printf '%s\n' "$dash_value" | grep -Eq '^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$'; then
	fail "COUCHWATCH_GRAFANA_DASHBOARD_LABEL \"$dash_label\" is not a valid Kubernetes label"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT INT TERM

ln -s "$here/.." "$work/couchwatch"
mkdir "$work/chart"
cat >"$work/chart/helm-output.yaml"
printf 'resources:\n  - helm-output.yaml\n' >"$work/chart/kustomization.yaml"

# The namespace, from the rendered objects (normalised by kustomize first).
$kustomize "$work/chart" >"$work/normalised.yaml"
found=$(awk '
/^---$/ { meta = 0; want = 0; next }
/^[^ ]/ { meta = ($0 ~ /^metadata:/) }
meta && /^  namespace: / { v = $2; gsub(/["'\'']/, "", v); print "object " v }
/^ *- name: HEALTHCHECK_ADDR$/ { want = 1; next }
want { if ($1 == "value:") print "healthcheck " $2; want = 0 }
' "$work/normalised.yaml")
objects_ns=$(printf '%s\n' "$found" | awk '$1 == "object" { print $2 }' | sort -u)
hc_ns=$(printf '%s\n' "$found" | awk '$1 == "healthcheck" { n = split($2, p, "."); if (n >= 3 && p[3] == "svc") print p[2] }' | sort -u)
if [ "$(printf '%s\n' "$objects_ns" | grep -c .)" -gt 1 ]; then
	fail "the rendered objects are in several namespaces ($(echo $objects_ns)): couchwatch serves one CHT instance"
fi
namespace=${COUCHWATCH_NAMESPACE:-}
for ns in $objects_ns $hc_ns; do
	if [ -z "$namespace" ]; then
		namespace=$ns
	elif [ "$ns" != "$namespace" ]; then
		fail "namespace mismatch: COUCHWATCH_NAMESPACE=\"${COUCHWATCH_NAMESPACE:-}\", rendered objects in \"$(echo $objects_ns)\", HEALTHCHECK_ADDR names \"$(echo $hc_ns)\""
	fi
done
[ -n "$namespace" ] || fail "cannot tell the release namespace: the rendered objects carry no metadata.namespace and no HEALTHCHECK_ADDR of the form healthcheck.<namespace>.svc...; set COUCHWATCH_NAMESPACE to the namespace you give helm -n"

# JSON pointer for the dashboard label key ("/" in a prefixed key becomes "~1").
dash_key_ptr=$(printf '%s' "$dash_key" | sed 's#~#~0#g; s#/#~1#g')

{
	echo "apiVersion: kustomize.config.k8s.io/v1beta1"
	echo "kind: Kustomization"
	echo "namespace: $namespace"
	echo "resources:"
	echo "  - chart"
	echo "components:"
	echo "$components"
	echo "images:"
	echo "  - name: couchwatch"
	echo "    newName: $name"
	if [ -n "$tag" ]; then
		echo "    newTag: \"$tag\""
	fi
	echo "patches:"
	# One CHT instance per namespace: cluster-scoped names carry the namespace.
	for role in couchwatch couchwatch-rebalance; do
		for kind in ClusterRole ClusterRoleBinding; do
			echo "  - target: {kind: $kind, name: $role}"
			echo "    patch: |-"
			echo "      - op: replace"
			echo "        path: /metadata/name"
			echo "        value: $role-$namespace"
			if [ "$kind" = ClusterRoleBinding ]; then
				echo "      - op: replace"
				echo "        path: /roleRef/name"
				echo "        value: $role-$namespace"
			fi
		done
	done
	echo "  - target: {kind: ConfigMap, name: couchwatch-dashboard}"
	echo "    patch: |-"
	echo "      - op: remove"
	echo "        path: /metadata/labels/grafana_dashboard"
	echo "      - op: add"
	echo "        path: /metadata/labels/$dash_key_ptr"
	echo "        value: \"$dash_value\""
} >"$work/kustomization.yaml"

$kustomize "$work"
