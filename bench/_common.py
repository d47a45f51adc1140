"""Shared helpers: run a child process and measure its wall time and peak RSS."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "bench" / "out"
DEFAULT_VENV = DEFAULT_OUT / "venv"
PY = sys.executable
"""The interpreter of the floors and probes: the bench venv's once `use_venv` ran."""
INGEST = [PY, "-m", "ingest_core.cli"]
"""The command measured: the bench venv's `ingest` console script once `use_venv` ran."""


def add_venv_args(parser: argparse.ArgumentParser) -> None:
    """The --venv (where the non-editable install lives) and --no-install options."""
    parser.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV,
        help=f"venv holding `pip install REPO` (non-editable); created when missing, the repo "
        f"reinstalled into it otherwise (default {DEFAULT_VENV})",
    )
    parser.add_argument(
        "--no-install", action="store_true",
        help="use the venv as it is (do not reinstall the repository into it)",
    )


def use_venv(venv: Path, install: bool = True) -> None:
    """Measure what a user runs: the `ingest` console script of a NON-editable install.

    Creates `venv` (python -m venv + pip install -c requirements.lock REPO) when
    it has no `ingest`; else reinstalls only the repository into it (no
    dependencies), unless `install` is false. The floors run with the venv's
    interpreter too, so both sides import the same pyarrow and deltalake.
    """
    global PY, INGEST
    venv = venv.absolute()
    python, script = venv / "bin" / "python", venv / "bin" / "ingest"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    lock = ["-c", str(REPO / "requirements.lock")] if (REPO / "requirements.lock").exists() else []
    if not script.exists():
        print(f"creating {venv}: python -m venv + pip install {REPO} (non-editable)", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([*pip, *lock, str(REPO)], check=True, stdout=subprocess.DEVNULL)
    elif install:
        subprocess.run(
            [*pip, "--no-deps", "--force-reinstall", str(REPO)], check=True,
            stdout=subprocess.DEVNULL,
        )
    PY = str(python)
    INGEST = [str(script)]


def add_folder_args(parser: argparse.ArgumentParser, inputs: str) -> None:
    """The --out (inputs from make_data.py) and --work (fresh tables) options."""
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT,
        help=f"folder holding {inputs} (default {DEFAULT_OUT})",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="where fresh tables are created (default OUT/runs)"
    )


@dataclass
class Measure:
    """One child process: wall seconds, peak RSS (MiB), exit status, output."""

    wall_s: float
    rss_mib: float
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        """The child's stdout parsed as JSON (the `--json` output of `ingest run`)."""
        return json.loads(self.stdout)


def run_child(cmd: Sequence[str], *, cwd: Path | None = None) -> Measure:
    """Run `cmd` to completion; peak RSS comes from this child's own rusage (os.wait4).

    stdout/stderr go to temporary files, so a chatty child cannot block on a pipe.
    The child runs in `cwd` (default: the temp folder), never in the repository:
    `python -c`/`-m` put the working folder first on sys.path, which would hide a
    PYTHONPATH pointing at another copy of ingest_core.
    """
    cwd = cwd or Path(tempfile.gettempdir())
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # Popen must not wait again
        out.seek(0)
        err.seek(0)
        return Measure(
            wall_s=wall,
            rss_mib=usage.ru_maxrss / 1024,  # Linux: KiB
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
        )


def check(m: Measure, what: str) -> None:
    """Fail loudly when a child did not exit 0."""
    if m.returncode != 0:
        sys.stderr.write(f"{what}: exit {m.returncode}\n{m.stderr[-4000:]}\n")
        raise SystemExit(f"{what} failed (exit {m.returncode})")


def fresh_dir(root: Path, name: str) -> Path:
    """A new empty folder under `root`."""
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))


def remove(path: Path) -> None:
    """Remove a folder tree (ignore errors)."""
    shutil.rmtree(path, ignore_errors=True)


def tree_bytes(path: Path) -> int:
    """Bytes of the parquet files under `path` (a Delta table's data)."""
    return sum(p.stat().st_size for p in path.rglob("*.parquet"))


def warm(path: Path) -> None:
    """Read a file or folder once so every run starts with it in the page cache."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        with open(f, "rb") as stream:
            while stream.read(8 * 1024 * 1024):
                pass


def stats(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max)."""
    return min(values), statistics.median(values), max(values)


def row(label: str, values: Sequence[float], unit: str, fmt: str = "{:.2f}") -> str:
    """One line of a min/median/max table."""
    lo, mid, hi = stats(values)
    cells = " ".join(f"{fmt.format(v):>9}" for v in (lo, mid, hi))
    return f"{label:<34} {cells}  {unit}"


def header(title: str) -> str:
    """The header line of a min/median/max table."""
    return f"{title:<34} {'min':>9} {'median':>9} {'max':>9}"


def machine() -> str:
    """A one-line description of the machine (cores, memory, Python, library versions)."""
    versions = subprocess.run(
        [PY, "-c", "import deltalake, pyarrow; print(pyarrow.__version__, deltalake.__version__)"],
        capture_output=True, text=True, check=False,
    ).stdout.split() or ["?", "?"]
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
        mem = f", {kib / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return (
        f"{os.cpu_count()} cores{mem}, Python {sys.version.split()[0]}, "
        f"pyarrow {versions[0]}, deltalake {versions[-1]}; "
        f"ingest_core from {_ingest_core_origin()}; {load()}"
    )


def load() -> str:
    """The load averages (1, 5, 15 min): other work on the machine skews wall times."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def ratio_row(label: str, ours: Sequence[float], floor: Sequence[float]) -> str:
    """min/median/max of the per-pair ratios ours/floor, as one table line."""
    ratios = [o / f for o, f in zip(ours, floor, strict=True)]
    return row(label, ratios, "x")


def _ingest_core_origin() -> str:
    """Where the children will import ingest_core from (PYTHONPATH is honoured)."""
    probe = subprocess.run(
        [PY, "-c", "import ingest_core, os; print(os.path.dirname(ingest_core.__file__))"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    where = probe.stdout.strip() or "?"
    rev = subprocess.run(
        ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{where}, installed from {REPO} ({rev})" if rev else where
