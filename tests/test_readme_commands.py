"""Every `ingest` command in the README's shell blocks that needs no Azure runs as written.

They run in order, in a fresh folder holding a copy of `examples/` (what a
fresh clone has), each as a separate process; each must exit 0.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from helpers import run_cli

ROOT = Path(__file__).resolve().parent.parent
NEEDS_AZURE = re.compile(r"abfss?://|azure-table://|https://|--via eventgrid|dead-letter")


def readme_commands() -> list[str]:
    """The `ingest ...` command lines of the README's bash blocks, comments and chains removed."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, re.S):
        for line in block.splitlines():
            command = line.split("&& ")[-1].split("  #")[0].strip()
            if command.startswith("ingest ") and not command.endswith("\\"):
                commands.append(command)
    return commands


def test_the_readme_has_local_commands_to_check():
    local = [c for c in readme_commands() if not NEEDS_AZURE.search(c)]
    assert len(local) >= 5 and any("--routes" in c for c in local)


def test_every_local_readme_command_runs_as_written_from_a_fresh_clone(tmp_path: Path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    for command in readme_commands():
        if NEEDS_AZURE.search(command):
            continue
        result = run_cli(*shlex.split(command)[1:], cwd=tmp_path)
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
