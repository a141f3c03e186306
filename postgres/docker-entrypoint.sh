#!/usr/bin/env bash
# Entrypoint of the offline stand-in for postgres:15-bookworm (see Dockerfile.offline): initialises PGDATA on
# first start from the official image's environment variables, then execs postgres (so signals reach it).
set -euo pipefail

die() {
    echo "error: $*" >&2
    exit 1
}

# VAR_FILE (a Docker secret) wins over VAR; $(<file) strips the trailing newline an editor leaves.
file_env() {
    local var="$1" file_var="$1_FILE"
    if [[ -n "${!file_var:-}" ]]; then
        [[ -r "${!file_var}" ]] || die "$file_var=${!file_var} is not a readable file"
        printf -v "$var" '%s' "$(<"${!file_var}")"
    fi
    export "${var?}"="${!var:-}"
}

load_env() {
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER
    file_env POSTGRES_DB
    export POSTGRES_USER="${POSTGRES_USER:-postgres}"
    export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
    export POSTGRES_HOST_AUTH_METHOD="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
}

# Only a new cluster needs a password (as in the official image): an existing one already has it.
require_password() {
    if [[ -z "$POSTGRES_PASSWORD" && "$POSTGRES_HOST_AUTH_METHOD" != trust ]]; then
        die "database is uninitialized and no superuser password is set: set POSTGRES_PASSWORD or" \
            "POSTGRES_PASSWORD_FILE (or POSTGRES_HOST_AUTH_METHOD=trust to allow connections without a password)"
    fi
}

# initdb names the superuser POSTGRES_USER and sets its password (SCRAM-hashed) from stdin, never argv.
init_cluster() {
    local pwfile=()
    [[ -n "$POSTGRES_PASSWORD" ]] && pwfile=(--pwfile=/dev/stdin)
    initdb --username="$POSTGRES_USER" "${pwfile[@]}" --encoding=UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host="$POSTGRES_HOST_AUTH_METHOD" <<<"$POSTGRES_PASSWORD"
    # initdb allows only loopback hosts: containers connect from their network's addresses.
    printf '\nhost all all all %s\n' "$POSTGRES_HOST_AUTH_METHOD" >>"$PGDATA/pg_hba.conf"
}

# A temporary server on the Unix socket only, so that the healthcheck (TCP) stays red until we are done.
create_database() {
    [[ "$POSTGRES_DB" == postgres ]] && return
    pg_ctl --wait --silent --options="-c listen_addresses=''" start
    psql -v ON_ERROR_STOP=1 --no-psqlrc --username="$POSTGRES_USER" --dbname=postgres \
        --set=db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
    pg_ctl --wait --silent --mode=fast stop
}

main() {
    # `docker run IMAGE -c max_connections=200` means postgres with those options, as in the official image.
    if [[ "${1:-}" == -* ]]; then
        set -- postgres "$@"
    fi
    if [[ "$1" == postgres ]]; then
        load_env
        mkdir -p "$PGDATA"
        chmod 700 "$PGDATA" || die "PGDATA=$PGDATA is not owned by uid $(id -u): chown -R 999:999 it"
        if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
            require_password
            init_cluster
            create_database
            echo "PostgreSQL init process complete; ready for start up."
        fi
        # The password is in the cluster now: keep it out of the server's environment.
        unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
    fi
    exec "$@"
}

main "$@"
