# shellcheck shell=bash
# Shared by the scripts: create or reuse a virtual environment from lock files.
# ensure_venv DIR LOCK... [-- EDITABLE_DIR...]
# Reinstalls only when a lock file (or the editable projects' pyproject.toml) changed.
ensure_venv() {
  local dir=$1; shift
  local locks=() editables=() seen_sep=0 arg
  for arg in "$@"; do
    if [ "$arg" = "--" ]; then seen_sep=1; continue; fi
    if [ $seen_sep = 1 ]; then editables+=("$arg"); else locks+=("$arg"); fi
  done
  local stamp
  stamp=$(cat "${locks[@]}" "${editables[@]/%//pyproject.toml}" | sha256sum | cut -d' ' -f1)
  if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    return 0
  fi
  echo "==> preparing $dir"
  python3 -m venv "$dir"
  pip_install "$dir/bin/python" --upgrade pip
  local reqs=() lock
  for lock in "${locks[@]}"; do reqs+=(-r "$lock"); done
  pip_install "$dir/bin/python" "${reqs[@]}"
  local project
  for project in "${editables[@]}"; do
    pip_install "$dir/bin/python" --no-deps --editable "$project"
  done
  echo "$stamp" > "$dir/.stamp"
}

# pip_install PYTHON ARGS...: `PYTHON -m pip install --quiet --no-input ARGS`. This machine's pip configuration
# names extra local indexes, some of whose folders are missing; pip's one warning line per missing folder (hundreds
# for the test venv) is noise and is left out.
pip_install() {
  local python=$1
  shift
  "$python" -m pip install --quiet --no-input "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# The venv of scripts/test and scripts/bench: every lock, and our own projects (the shared library first) editable.
ensure_test_venv() {
  ensure_venv .venvs/test requirements-dev.lock foundry-local/requirements.lock chat-app/requirements.lock \
    router/requirements.lock -- common foundry-local chat-app router
}

require_python_311() {
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || {
    echo "error: Python 3.11 or newer is needed as python3 (found: $(python3 --version 2>&1))." >&2
    exit 2
  }
}
