# shellcheck shell=bash
# Sourced by the scripts: `show_help "$0" "$@"` prints the script's header comment (its usage) and exits 0 when
# the first argument is -h or --help, so that asking for help never runs the script; `print_help "$0"` only prints
# it. The header is every comment line after the shebang up to the first other line, less `# shellcheck`
# directives (a script's file-wide ones must come right after the shebang).
print_help() {
  awk 'NR == 1 || /^# shellcheck / { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$1"
}

show_help() {
  local script=$1
  shift
  case ${1:-} in
    -h | --help)
      print_help "$script"
      exit 0
      ;;
  esac
}
