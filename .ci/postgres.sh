#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 for the tests and prints its URL.
# Installs Debian's package when it is missing. Usage: eval "$(bash .ci/postgres.sh start DIR)".
set -euo pipefail
cmd=${1:-start}
dir=${2:-/tmp/autosched-pg}
port=${AUTOSCHED_PG_PORT:-55432}
bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
if [ "$cmd" = stop ]; then
  b=$(bindir); [ -n "$b" ] && [ -d "$dir/data" ] && su postgres -c "$b/pg_ctl -D $dir/data -m immediate stop" >/dev/null 2>&1 || true
  rm -rf "$dir"
  exit 0
fi
if [ -z "$(bindir)" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
fi
b=$(bindir)
rm -rf "$dir"; mkdir -p "$dir"; chown postgres:postgres "$dir"
su postgres -c "$b/initdb -D $dir/data -A trust -U autosched" >/dev/null
su postgres -c "$b/pg_ctl -D $dir/data -l $dir/log -w -o '-h 127.0.0.1 -p $port -k $dir' start" >/dev/null
echo "export AUTOSCHED_TEST_POSTGRES_URL=postgresql+psycopg2://autosched@127.0.0.1:$port/postgres"
