#!/bin/sh
# Installs couchwatch's Compose overrides into a CHT site's Compose folder, the folder CHT's
# upgrade service mounts (CHT_COMPOSE_PATH), then checks them as that service will.
#
#   manifests/compose/install.sh agent   "$CHT_COMPOSE_PATH"   # step 1
#   manifests/compose/install.sh runtime "$CHT_COMPOSE_PATH"   # step 2
#   manifests/compose/install.sh remove  "$CHT_COMPOSE_PATH"   # roll back
#
# Settings (environment): COUCHWATCH_IMAGE (required for agent and runtime),
# COUCHWATCH_METRICS_PUBLISH (host address of /metrics, default 127.0.0.1:9155),
# COMPOSE (default "docker compose", else "docker-compose").
#
# Why a script and not a copy: CHT's upgrade service runs "docker compose" inside its own
# container, with the folder mounted at /docker-compose and none of the operator's
# variables. So the image and the publish address are written into the files, and bind
# mounts name the folder's absolute path on the host. It validates each file alone (as the
# upgrade service does before using it: a file that fails is silently skipped), then all of
# them together in the folder's alphabetical order (the order the upgrade service uses).
set -eu

fail() {
	echo "couchwatch install: $*" >&2
	exit 2
}

[ $# -eq 2 ] || fail "usage: $0 agent|runtime|remove <CHT compose folder (CHT_COMPOSE_PATH)>"
mode=$1
dir=$2
src=$(cd "$(dirname "$0")" && pwd)
case "$dir" in
/*) ;;
*) fail "the compose folder must be an absolute path (bind mounts are resolved on the host), not \"$dir\"" ;;
esac
[ -f "$dir/cht-core.yml" ] || fail "$dir has no cht-core.yml: give the folder that holds CHT's compose files"
image=${COUCHWATCH_IMAGE:-}
publish=${COUCHWATCH_METRICS_PUBLISH:-127.0.0.1:9155}
if [ -z "${COMPOSE:-}" ]; then
	if docker compose version >/dev/null 2>&1; then
		COMPOSE="docker compose"
	else
		COMPOSE=docker-compose
	fi
fi

agent_file=$dir/couchwatch.yml
runtime_file=$dir/00-couchwatch-runtime-api.yml

# fill SRC DEST: the shipped file with the site's values written in.
fill() {
	sed -e "s#\${COUCHWATCH_IMAGE:-couchwatch:dev}#$image#g" \
		-e "s#\${COUCHWATCH_METRICS_PUBLISH:-127.0.0.1:9155}#$publish#g" \
		-e "s#\./couchwatch/#$dir/couchwatch/#g" "$1" >"$2.tmp"
	mv "$2.tmp" "$2"
}

case "$mode" in
agent | runtime)
	[ -n "$image" ] || fail "COUCHWATCH_IMAGE is not set: set it to the couchwatch image you pushed"
	case "$image$publish" in *'#'* | *' '*) fail "COUCHWATCH_IMAGE and COUCHWATCH_METRICS_PUBLISH may not contain '#' or spaces" ;; esac
	fill "$src/couchwatch.yml" "$agent_file"
	if [ "$mode" = runtime ]; then
		mkdir -p "$dir/couchwatch"
		cp "$src/couchwatch/couchwatch.cfg" "$src/couchwatch/docker-entrypoint.sh" "$dir/couchwatch/"
		chmod 0644 "$dir/couchwatch/couchwatch.cfg"
		chmod 0755 "$dir/couchwatch/docker-entrypoint.sh"
		fill "$src/00-couchwatch-runtime-api.yml" "$runtime_file"
	else
		rm -f "$runtime_file"
	fi
	;;
remove)
	rm -f "$agent_file" "$runtime_file"
	rm -rf "$dir/couchwatch"
	;;
*) fail "mode must be agent, runtime or remove, not \"$mode\"" ;;
esac

# Check as CHT's upgrade service does: each file alone, then all in alphabetical order.
# CHT's files refuse an unset COUCHDB_PASSWORD; "config -q" starts nothing and prints
# nothing, so a stand-in is enough when the operator's shell does not have it.
COUCHDB_PASSWORD=${COUCHDB_PASSWORD:-not-needed-to-validate}
export COUCHDB_PASSWORD
cd "$dir"
set --
for f in *.yml; do
	if ! $COMPOSE -f "$f" config -q; then
		fail "$f does not stand alone: CHT's upgrade service would skip it"
	fi
	set -- "$@" -f "$f"
done
$COMPOSE "$@" config -q || fail "the compose files do not merge"
echo "couchwatch install: $mode: the files in $dir stand alone and merge; restart the stack to apply"
