#!/usr/bin/env bash
# Start of the edge image: EDGE_ADMIN_PASSWORD_FILE (a Docker secret) becomes EDGE_ADMIN_PASSWORD, the password
# of user `admin` on the Prometheus port (haproxy.cfg); EDGE_TLS_CERTIFICATE turns on HTTPS; then the command
# (haproxy) replaces this shell.
set -euo pipefail

if [[ -n "${EDGE_ADMIN_PASSWORD_FILE:-}" ]]; then
    if [[ ! -r "$EDGE_ADMIN_PASSWORD_FILE" ]]; then
        echo "edge: EDGE_ADMIN_PASSWORD_FILE=$EDGE_ADMIN_PASSWORD_FILE is not a readable file" >&2
        exit 1
    fi
    # $(<file) drops the trailing newline that secret files usually end with.
    EDGE_ADMIN_PASSWORD="$(<"$EDGE_ADMIN_PASSWORD_FILE")"
    export EDGE_ADMIN_PASSWORD
fi
if [[ -z "${EDGE_ADMIN_PASSWORD:-}" ]]; then
    echo "edge: no admin password (EDGE_ADMIN_PASSWORD[_FILE]): the Prometheus port answers 403 to everything" >&2
fi

# Swarm's DNS gives every task of a service as tasks.<name> (the default); Compose's under the name itself ("").
export EDGE_SERVICE_PREFIX="${EDGE_SERVICE_PREFIX-tasks.}"
# HTTPS on the chat's, the router's and Open WebUI's ports with this PEM (certificate, chain, key); plain HTTP without.
EDGE_TLS_BIND=""
if [[ -n "${EDGE_TLS_CERTIFICATE:-}" ]]; then
    if [[ ! -r "$EDGE_TLS_CERTIFICATE" ]]; then
        echo "edge: EDGE_TLS_CERTIFICATE=$EDGE_TLS_CERTIFICATE is not a readable file (certificate and key, PEM)" >&2
        exit 1
    fi
    EDGE_TLS_BIND="ssl crt $EDGE_TLS_CERTIFICATE"
fi
export EDGE_TLS_BIND

exec "$@"
