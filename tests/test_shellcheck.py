"""shellcheck (Debian's package) on every bash script of scripts/ and .ci/: any finding fails the run.

Fix what it finds; when the code is right as it is, disable that one check on that one line with a reason:
`# shellcheck disable=SC2034  # read by the scripts that source this file`.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.support.process import REPO

# A static check of files, like ruff: in the unit tier so that `scripts/test --fast` runs it too.
pytestmark = pytest.mark.unit

BASH_SHEBANG = re.compile(rb"#!\s*\S*/(?:env\s+)?bash(?:\s|$)")


def bash_scripts() -> list[str]:
    """Files under scripts/ and .ci/ with a bash shebang, the sourced libraries (scripts/lib/*.sh), and the
    images' entry scripts (every other *.sh of the repository)."""
    found = []
    for top in ("scripts", ".ci"):
        for path in sorted((REPO / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            with path.open("rb") as file:
                first_line = file.readline(200)
            if path.suffix == ".sh" or BASH_SHEBANG.match(first_line):
                found.append(path.relative_to(REPO).as_posix())
    for path in sorted(REPO.glob("*/*.sh")):
        found.append(path.relative_to(REPO).as_posix())
    return found


def test_the_bash_scripts_are_found() -> None:
    scripts = bash_scripts()
    expected = {"scripts/test", "scripts/install-prerequisites", ".ci/run"} | {
        p.relative_to(REPO).as_posix() for p in (REPO / "scripts" / "lib").glob("*.sh")
    }
    assert expected <= set(scripts), f"missing from {scripts}: {sorted(expected - set(scripts))}"
    assert "scripts/doctor" not in scripts, "scripts/doctor is Python"
    assert {"edge/entrypoint.sh", "postgres/docker-entrypoint.sh", "open-webui/start.sh"} <= set(scripts)


def test_every_bash_script_passes_shellcheck() -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.fail(
            "shellcheck is missing: run scripts/install-prerequisites (Debian package shellcheck).", pytrace=False
        )
    scripts = bash_scripts()
    # --external-sources: follow `source` into scripts/lib (each script says where with `# shellcheck source-path=`).
    result = subprocess.run(
        [shellcheck, "--external-sources", "--color=never", "--", *scripts],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    if result.returncode != 0:
        pytest.fail(
            f"shellcheck (exit {result.returncode}) on {len(scripts)} scripts:\n{result.stdout}{result.stderr}\n"
            "Fix each finding; only when the code is right, disable that check on its line: "
            "`# shellcheck disable=SCxxxx  # reason`.",
            pytrace=False,
        )
