#!/usr/bin/env bash
# Start Open WebUI like the official image's start.sh does: WEBUI_SECRET_KEY from the environment, else from
# WEBUI_SECRET_KEY_FILE (generated once; compose.yaml points it into the data volume so that sessions survive
# a re-created container), then uvicorn on $HOST:$PORT. OPENAI_API_KEYS_FILE (a Docker secret in the Swarm stack)
# gives the connection's key without putting it in the environment of the service.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

KEY_FILE=${WEBUI_SECRET_KEY_FILE:-.webui_secret_key}
PORT=${PORT:-8080}
HOST=${HOST:-0.0.0.0}
if [[ -z ${WEBUI_SECRET_KEY:-} && -z ${WEBUI_JWT_SECRET_KEY:-} ]]; then
  if [[ ! -s $KEY_FILE ]]; then
    echo "Generating WEBUI_SECRET_KEY into $KEY_FILE"
    (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(32))' > "$KEY_FILE")
  fi
  echo "Loading WEBUI_SECRET_KEY from $KEY_FILE"
  WEBUI_SECRET_KEY=$(cat "$KEY_FILE")
fi
export WEBUI_SECRET_KEY
if [[ -n ${OPENAI_API_KEYS_FILE:-} ]]; then
  OPENAI_API_KEYS=$(cat "$OPENAI_API_KEYS_FILE")
  export OPENAI_API_KEYS
fi
# The Compose stack published beyond loopback (foundry_common/network_lock.py): the router asks for its generated
# key unless ROUTER_API_KEY was set, and the admin is created at first start with the generated password (Open WebUI
# does so when WEBUI_ADMIN_EMAIL and WEBUI_ADMIN_PASSWORD are set and it has no account yet).
SECRETS=${SECRETS_DIR:-/run/secrets}
if [[ ${OPENAI_API_KEYS:-not-needed} == not-needed && -s $SECRETS/ROUTER_API_KEY ]]; then
  OPENAI_API_KEYS=$(cat "$SECRETS/ROUTER_API_KEY")
  export OPENAI_API_KEYS
fi
if [[ -z ${WEBUI_ADMIN_PASSWORD:-} && -s $SECRETS/WEBUI_ADMIN_PASSWORD ]]; then
  WEBUI_ADMIN_PASSWORD=$(cat "$SECRETS/WEBUI_ADMIN_PASSWORD")
  export WEBUI_ADMIN_PASSWORD
else
  unset WEBUI_ADMIN_EMAIL  # on loopback the first account to sign up is the admin
fi

exec uvicorn open_webui.main:app --host "$HOST" --port "$PORT" \
  --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-*}" --workers "${UVICORN_WORKERS:-1}"
