#!/bin/sh
# couchwatch: replacement for /usr/local/bin/docker-entrypoint.sh in CHT's HAProxy image.
#
# CHT's entrypoint ends with
#   exec /usr/local/bin/docker-entrypoint.sh -f <default_frontend.cfg> -f <backend.cfg>
# and ignores its own arguments, so the only way to load one more configuration file
# without copying CHT's files is here. This script does what the stock HAProxy image's
# entrypoint does (run "haproxy -W -db" for option arguments) and appends
# "-f $COUCHWATCH_HAPROXY_CFG" (default: the couchwatch.cfg mounted beside it).
set -e

cfg="${COUCHWATCH_HAPROXY_CFG:-/usr/local/etc/haproxy/couchwatch/couchwatch.cfg}"

# First argument is an option such as -f: run haproxy.
if [ "${1#-}" != "$1" ]; then
	set -- haproxy "$@"
fi

if [ "$1" = 'haproxy' ]; then
	shift
	# -W master-worker mode, -db stay in the foreground (as the stock image does).
	set -- haproxy -W -db "$@" -f "$cfg"
fi

exec "$@"
