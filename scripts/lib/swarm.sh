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
# A global service with no task at all (0/0) is not ready either: every role has a node (scripts/swarm-up labels
# one), so Swarm placed it nowhere, which it says only in its tasks' errors (a host port taken, most often).
services_not_ready() {
  local name mode replicas
  while read -r name mode replicas; do
    local running=${replicas%%/*} desired=${replicas#*/} nowhere=""
    desired=${desired%% *}
    [[ $mode == global && $desired == 0 ]] && nowhere=" (a global service placed on no node)"
    if [[ $running != "$desired" || -n $nowhere ]]; then
      local error
      error=$(docker service ps "$name" --no-trunc --format '{{.Error}}' | grep -m1 . || true)
      echo "$name $running/$desired$nowhere${error:+ (last error: $error)}"
    fi
  done < <(docker stack services "$STACK_NAME" --format '{{.Name}} {{.Mode}} {{.Replicas}}')
}

# The newest error of the service's tasks since SINCE (seconds since the epoch), if any: older tasks may have
# failed for a reason that is gone.
recent_task_error() {
  local name=$1 since=$2 tasks
  tasks=$(docker service ps --quiet "$name")
  [[ -n $tasks ]] || return 0
  # shellcheck disable=SC2086  # one argument per task id
  docker inspect --format '{{.Status.Timestamp.Unix}} {{.Status.Err}}' $tasks |
    sort -rn | awk -v since="$since" '$1 >= since && NF > 1 { sub(/^[0-9]+ /, ""); print; exit }'
}

# Swarm's words for a host-mode port it cannot bind: the engine's (a container holds it; a process holds it) and
# the scheduler's (another task of the swarm publishes it).
PORT_TAKEN='port is already allocated|address already in use|host-mode port already in use'

# The variable of swarm/stack.yaml that publishes the edge's TARGET port (CHAT_APP_PORT for 8080, ...).
port_variable() {
  sed -n "s/.*target: $1, published: \"\${\([A-Z_]*\):-.*/\1/p" swarm/stack.yaml | head -n 1
}

# What holds host port PORT on this node, other than a task of SERVICE, and what frees it; nothing if it is free
# or SERVICE's own task holds it (an older task during an update: Swarm stops it first).
port_holder() {
  local port=$1 service=$2 name project dir swarm_service namespace
  while IFS='|' read -r name project dir swarm_service namespace; do
    [[ -n $name ]] || continue
    [[ $swarm_service != "$service" ]] || return 0
    if [[ -n $dir ]]; then # made by Compose: the working_dir label is on its containers only, not on its images
      echo "the container $name of the Compose project $project (\`docker compose down\` in $dir frees it)"
    elif [[ -n $namespace ]]; then
      echo "the container $name, a task of the stack $namespace (\`docker stack rm $namespace\` frees it)"
    else
      echo "the container $name (\`docker stop $name\` frees it)"
    fi
    return 0
  done < <(docker ps --filter "publish=$port" --format '{{.Names}}|{{.Label "com.docker.compose.project"}}|{{.Label "com.docker.compose.project.working_dir"}}|{{.Label "com.docker.swarm.service.name"}}|{{.Label "com.docker.stack.namespace"}}')
  command -v ss >/dev/null || return 0
  local process
  # docker-proxy is a container's port: the containers were seen above.
  process=$(ss -Hltnp "sport = :$port" 2>/dev/null | grep -o 'users:(([^)]*))' | grep -v '"docker-proxy"' | head -n 1)
  [[ -z $process ]] || echo "a process of this machine, $process (\`ss -ltnp 'sport = :$port'\`)"
}

# Each host-mode port SERVICE publishes that something else holds on this node: "PORT|VARIABLE|HOLDER" lines.
taken_ports() {
  local service=$1 published target holder
  while read -r published target; do
    [[ -n $published ]] || continue
    holder=$(port_holder "$published" "$service")
    [[ -z $holder ]] || echo "$published|$(port_variable "$target")|$holder"
  done < <(docker service inspect "$service" --format \
    '{{range .Spec.EndpointSpec.Ports}}{{if eq .PublishMode "host"}}{{.PublishedPort}} {{.TargetPort}}{{println}}{{end}}{{end}}')
}

# Why SERVICE cannot start, to stderr: the host ports it publishes that are taken, what holds each, what to do.
explain_taken_ports() {
  local service=$1 taken port variable holder variables=()
  taken=$(taken_ports "$service")
  echo "$service cannot start: a host port it publishes is taken on the node where it should run." >&2
  if [[ -z $taken ]]; then
    echo "  Nothing on this machine holds its ports: on the nodes it is placed on (their labels), see what does \
(\`docker ps --filter publish=PORT\`, \`ss -ltnp 'sport = :PORT'\`)." >&2
  fi
  while IFS='|' read -r port variable holder; do
    [[ -n $port ]] || continue
    echo "  Port $port${variable:+ ($variable)} is held by $holder." >&2
    [[ -z $variable ]] || variables+=("$variable=ANOTHER_PORT")
  done <<<"$taken"
  echo "What to do: free the port (stop what holds it: a Compose stack of this project with \`docker compose \
down\`), or publish the stack on other ports: ${variables[*]:-CHAT_APP_PORT=... ROUTER_PORT=...} scripts/swarm-up \
(docs/swarm.md). Swarm keeps trying: once the port is free, the task starts by itself." >&2
}

# Until every service has all its tasks running (a task with a health check runs once it is healthy), or TIMEOUT
# seconds, or a service cannot start because something else holds a host port it publishes (waiting would not
# help; its own older task does not count: an update stops it). Task errors older than SINCE (seconds since the
# epoch: when the deploy began) are not taken as the reason.
# Returns 0 when every service is ready; else 1, with what is missing, its tasks and why on stderr.
wait_for_services() {
  local deadline=$((SECONDS + $1)) since=${2:-0} pending name _
  while true; do
    pending=$(services_not_ready)
    [[ -z $pending ]] && return 0
    while read -r name _; do
      if [[ $(recent_task_error "$name" "$since") =~ $PORT_TAKEN && -n $(taken_ports "$name") ]]; then
        echo "not ready: $(grep -m1 "^$name " <<<"$pending")" >&2
        explain_taken_ports "$name"
        return 1
      fi
    done <<<"$pending"
    if ((SECONDS > deadline)); then
      echo "not ready:" >&2
      echo "$pending" >&2
      while read -r name _; do
        docker service ps "$name" --no-trunc >&2 || true
        if [[ -n $(taken_ports "$name") || $(recent_task_error "$name" "$since") =~ $PORT_TAKEN ]]; then
          explain_taken_ports "$name"
        fi
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
