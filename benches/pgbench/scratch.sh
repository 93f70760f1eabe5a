# Sourced by the pgbench scripts: a scratch database on PGBENCH_ADMIN_URL's server (default the
# local one), dropped when the script exits, with the ledger's migrations applied by name.
#   scratch_database PREFIX   sets $url;   migrate NAME...   applies migrations/postgres/NAME.sql
migrations="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../migrations/postgres" && pwd)"
scratch_database() {
    admin="${PGBENCH_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
    database="${1}_$$"
    psql -q "$admin" -c "CREATE DATABASE $database" >/dev/null
    trap 'psql -q "$admin" -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null' EXIT
    url="${admin%/*}/$database"
}
migrate() {
    for name in "$@"; do
        psql -q "$url" -f "$migrations/$name.sql" >/dev/null
    done
}
