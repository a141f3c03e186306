# shellcheck shell=bash
# Sourced by the scripts for their messages: die MESSAGE (to stderr, prefixed with the script's name, then exit 1),
# and timed sections: `section TITLE` ... `done_section` ("done in Ns").

die() {
  echo "$(basename "$0"): $*" >&2
  exit 1
}

section() {
  printf '\n== %s\n' "$*"
  t_section=$SECONDS
}

done_section() {
  printf '   done in %ss\n' "$((SECONDS - t_section))"
}
