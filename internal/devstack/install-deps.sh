#!/bin/sh
# Installs the server binaries that internal/devstack starts for `abacusd dev`
# and for tests: PostgreSQL (initdb, pg_ctl, postgres) and redis-server.
# Idempotent and silent when everything is present. Needs root (or sudo
# without a password) and apt-get when something is missing.
set -eu

have_postgres() {
	bindir=$(pg_config --bindir 2>/dev/null || true)
	if [ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/postgres" ]; then
		return 0
	fi
	for dir in /usr/lib/postgresql/*/bin; do
		if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
			return 0
		fi
	done
	command -v initdb >/dev/null 2>&1 && command -v postgres >/dev/null 2>&1
}

have_redis() {
	command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]
}

missing=""
have_postgres || missing="$missing postgresql"
have_redis || missing="$missing redis-server"
# As root, PostgreSQL runs as the postgres OS user, which the package creates.
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
	case "$missing" in *postgresql*) ;; *) missing="$missing postgresql" ;; esac
fi
[ -z "$missing" ] && exit 0

echo "install-deps: installing$missing" >&2
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: apt-get not found; install$missing with your package manager" >&2
	exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
	sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
	sudo="sudo -n"
else
	echo "install-deps: not root; run: sudo apt-get install -y$missing" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086 # word splitting of $sudo and $missing is intended
$sudo apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
