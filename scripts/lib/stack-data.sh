# shellcheck shell=bash
# Sourced by scripts/backup and scripts/restore (after `cd` to the repository, with lib/log.sh's `die`): the stack
# they act on, its chat-app and open-webui containers, and the chat's PostgreSQL as this machine sees it.

DATA_SERVICES=(chat-app open-webui)
# shellcheck disable=SC2034 # used by the scripts that source this file
CHAT_DATA=/app/data WEBUI_DATA=/app/backend/data

# The stack `docker compose` sees here: COMPOSE_PROJECT_NAME (else .env, else compose.yaml's name) and COMPOSE_FILE
# when set; without COMPOSE_FILE, the compose files the stack was started with (its containers' label), so that
# an offline stack (compose.yaml + compose.offline.yaml) needs no setting. Sets `project`.
# find_stack running|created: whether the two services' containers must be running, or only exist.
find_stack() {
  local state=$1 config container files path usable=1 service services
  local -a paths
  command -v docker >/dev/null || die "the docker command is not installed"
  docker info >/dev/null 2>&1 || die "no Docker engine answers: start Docker (scripts/doctor says more)"
  docker compose version >/dev/null 2>&1 \
    || die "no Compose v2 plugin (docker compose): see scripts/install-prerequisites"
  config=$(docker compose config --format json 2>&1) || die "docker compose cannot read the compose files: $config"
  read -r project services < <(python3 -c 'import json, sys
config = json.load(sys.stdin)
print(config["name"], " ".join(config["services"]))' <<<"$config")
  for service in "${DATA_SERVICES[@]}"; do
    [[ " $services " == *" $service "* ]] \
      || die "the compose files (${COMPOSE_FILE:-compose.yaml}) define no $service service"
  done
  container=$(docker compose ps --all --quiet chat-app | head -n 1)
  [[ -n $container ]] || die "the stack is not running: project $project has no chat-app container (start it \
with \`docker compose up -d --wait\`, or set COMPOSE_PROJECT_NAME to the running project: docker compose ls)"
  if [[ -z ${COMPOSE_FILE:-} ]]; then
    files=$(docker inspect --format '{{index .Config.Labels "com.docker.compose.project.config_files"}}' "$container")
    IFS=, read -r -a paths <<<"$files"
    for path in "${paths[@]}"; do [[ -f $path ]] || usable=0; done
    if ((${#paths[@]} && usable)); then
      COMPOSE_FILE=$(IFS=:; echo "${paths[*]}")
      export COMPOSE_FILE
    fi
  fi
  for service in "${DATA_SERVICES[@]}"; do
    if [[ $state == running ]]; then
      [[ -n $(docker compose ps --quiet --status running "$service") ]] || die "$service is not running in \
project $project: start it (docker compose up -d --wait $service) and try again"
    else
      [[ -n $(docker compose ps --all --quiet "$service") ]] || die "project $project has no $service container: \
start the stack (docker compose up -d --wait), then restore into it"
    fi
  done
}

# A variable of the service's container as Compose set it (running or stopped); empty when unset.
container_env() {
  local container
  container=$(docker compose ps --all --quiet "$1" | head -n 1)
  docker inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$container" | sed -n "s/^$2=//p" | head -n 1
}

# Where the chat keeps its history: sets `chat_history` (sqlite, postgresql or off), `chat_database_url`
# (PostgreSQL only: never print it, it holds a password; BACKUP_DATABASE_URL replaces it) and
# `chat_database_origin` (the setting it came from, for messages).
find_chat_history() {
  local history
  chat_database_url=$(container_env chat-app DATABASE_URL)
  chat_database_origin="the chat-app container's DATABASE_URL"
  chat_history=sqlite
  if [[ -z $chat_database_url ]]; then
    history=$(container_env chat-app CHAT_HISTORY)
    if [[ ${history,,} =~ ^(false|f|0|no|n|off)$ ]]; then chat_history=off; fi
    return 0
  fi
  case $chat_database_url in
    postgres://* | postgresql://* | postgres+*://* | postgresql+*://*) ;;
    *) die "the chat's DATABASE_URL is not a PostgreSQL URL: only PostgreSQL and the default SQLite (DATABASE_URL \
unset) are handled here; copy that database yourself" ;;
  esac
  # shellcheck disable=SC2034  # chat_history is read by the scripts that source this file
  chat_history=postgresql
  if [[ -n ${BACKUP_DATABASE_URL:-} ]]; then
    chat_database_url=$BACKUP_DATABASE_URL
    chat_database_origin=BACKUP_DATABASE_URL
  fi
}

# The chat's PostgreSQL from this machine: pg check | dump FILE | restore FILE | version. The URL reaches libpq as
# PG* variables, never on a command line; messages name only its host and port.
PG_PY='
import os, socket, subprocess, sys
from urllib.parse import parse_qsl, unquote, urlsplit
script = os.environ.pop("CHAT_DATABASE_SCRIPT")
origin = os.environ.pop("CHAT_DATABASE_ORIGIN")
def fail(message):
    sys.exit(f"{script}: {message}")
try:
    url = urlsplit(os.environ.pop("CHAT_DATABASE_URL"))
    host, port = url.hostname or "localhost", url.port or 5432
    valid = url.scheme.split("+")[0] in ("postgres", "postgresql")
except ValueError:
    valid = False
if not valid:
    fail(f"{origin} is not a valid postgresql:// URL")
env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
env.update(PGHOST=host, PGPORT=str(port), PGDATABASE=unquote(url.path.lstrip("/")) or unquote(url.username or ""))
if url.username:
    env["PGUSER"] = unquote(url.username)
if url.password:
    env["PGPASSWORD"] = unquote(url.password)
libpq = {"sslmode": "PGSSLMODE", "ssl": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT",
         "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT", "application_name": "PGAPPNAME"}
for key, value in parse_qsl(url.query):
    if key in libpq:
        env[libpq[key]] = value
mode = sys.argv[1]
if mode == "check":
    try:
        socket.create_connection((host, port), timeout=5).close()
    except OSError as exc:
        fail(
            f"the chat history is in PostgreSQL at {host}:{port} ({origin}), which this machine cannot reach "
            f"({exc.strerror or exc}). pg_dump and pg_restore run here, not in a container: when {host} is a name "
            "only the containers know (a Compose service, host.docker.internal), publish the database port and "
            "set BACKUP_DATABASE_URL to its URL as seen from here, e.g. "
            f"BACKUP_DATABASE_URL=postgresql://USER:PASSWORD@127.0.0.1:5432/DB scripts/{script} ..."
        )
elif mode in ("dump", "restore"):
    if mode == "dump":
        command = ["pg_dump", "--format=custom", "--file", sys.argv[2]]
    else:
        command = ["pg_restore", "--clean", "--if-exists", "--no-owner", "--single-transaction",
                   "--dbname", env["PGDATABASE"], sys.argv[2]]
    done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        hint = " (it must be at least as new as the server)" if "version mismatch" in done.stderr else ""
        fail(f"{command[0]} on {host}:{port} failed{hint}:\n{done.stderr.strip()}")
elif mode == "version":
    done = subprocess.run(["psql", "-XAtqc", "SELECT max(version) FROM schema_version"], env=env,
                          capture_output=True, text=True)
    print(done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown")
'
pg() {
  local tool
  for tool in pg_dump pg_restore psql; do
    command -v $tool >/dev/null \
      || die "the chat history is in PostgreSQL and $tool is missing: apt-get install postgresql-client"
  done
  CHAT_DATABASE_URL=$chat_database_url CHAT_DATABASE_ORIGIN=$chat_database_origin \
    CHAT_DATABASE_SCRIPT=$(basename "$0") python3 -c "$PG_PY" "$@"
}
