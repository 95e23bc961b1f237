# Shared by hack/test.sh and hack/demo.sh: install what couchwatch's tests and demo need
# on a Debian machine, when it is missing. Sourced, not run.

as_root() {
	if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
apt_install() {
	if [ -z "$apt_updated" ]; then
		as_root apt-get update -qq
		apt_updated=1
	fi
	DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_go: a Go toolchain able to build go.mod's version. An older go fetches the right
# toolchain through the Go module proxy (GOTOOLCHAIN=auto); with no go at all, Debian's
# golang-go bootstraps that.
ensure_go() {
	# go needs a home for its caches; CI may run with a bare environment.
	export HOME="${HOME:-$(getent passwd "$(id -u)" | cut -d: -f6)}"
	if [ -x /usr/local/go/bin/go ]; then
		export PATH="/usr/local/go/bin:$PATH"
	fi
	if ! command -v go >/dev/null; then
		echo "couchwatch: installing Debian's golang-go to bootstrap Go" >&2
		apt_install golang-go ca-certificates
	fi
	export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
	go version >/dev/null
}

# ensure_cmd CMD PACKAGE: install PACKAGE when CMD is missing.
ensure_cmd() {
	if ! command -v "$1" >/dev/null && [ ! -x "/usr/sbin/$1" ]; then
		echo "couchwatch: installing Debian's $2 (for $1)" >&2
		apt_install "$2"
	fi
}
