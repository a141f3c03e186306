# shellcheck shell=bash
# Sourced by scripts/swarm-up and scripts/swarm-down: the stack's name, where its secrets are, the label that
# marks a swarm swarm-up started, and waiting for a deployed stack.

# shellcheck disable=SC2034  # used by the scripts that source this file
STACK_NAME=${STACK_NAME:-foundry}
# shellcheck disable=SC2034
SECRETS_DIR=$(realpath -m "${SWARM_SECRETS_DIR:-swarm/secrets}")
# shellcheck disable=SC2034
CREATED_LABEL=foundry.swarm-started-by-swarm-up

# One line per service that is not ready yet: NAME running/desired, and its newest task's error when it has one.
services_not_ready() {
  local name replicas
  while read -r name replicas; do
    local running=${replicas%%/*} desired=${replicas#*/}
    desired=${desired%% *}
    if [[ $running != "$desired" ]]; then
      local error
      error=$(docker service ps "$name" --no-trunc --format '{{.Error}}' | grep -m1 . || true)
      echo "$name $running/$desired${error:+ (last error: $error)}"
    fi
  done < <(docker stack services "$STACK_NAME" --format '{{.Name}} {{.Replicas}}')
}

# Until every service has all its tasks running (a task with a health check runs once it is healthy), or
# TIMEOUT seconds: then what is missing, and its tasks.
wait_for_services() {
  local deadline=$((SECONDS + $1)) pending
  while true; do
    pending=$(services_not_ready)
    [[ -z $pending ]] && return 0
    if ((SECONDS > deadline)); then
      echo "not ready:" >&2
      echo "$pending" >&2
      local name _
      while read -r name _; do
        docker service ps "$name" --no-trunc >&2 || true
      done <<<"$pending"
      return 1
    fi
    sleep 2
  done
}

# This engine's node id (`self` works for `docker node inspect`, not for `docker node update`).
this_node() {
  docker info --format '{{.Swarm.NodeID}}'
}
