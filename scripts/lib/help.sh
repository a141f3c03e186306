# shellcheck shell=bash
# Sourced by the scripts: `show_help "$0" "$@"` prints the script's header comment (its usage) and exits 0 when
# the first argument is -h or --help, so that asking for help never runs the script.
show_help() {
  local script=$1
  shift
  case ${1:-} in
    -h | --help)
      awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$script"
      exit 0
      ;;
  esac
}
