"""Dependencies: pyproject.toml is the source, requirements.* its pinned lock, floors honest.

`.ci/lock` generates requirements.lock (pip-compile: every package, transitive
ones included, pinned) and requirements.txt (what the Functions build installs:
pyproject's dependencies pinned to the lock's versions, `-c requirements.lock`
for the rest). These tests hold the three together and check the declared
azure-functions floor against the `func.*` names the app uses. `.ci/run` runs
this file and the event tests a second time with the floor version itself on
the path (AZURE_FUNCTIONS_FLOOR_CHECK set): the lowest version allowed is tested.
"""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")

FUNC_NAMES_SINCE = {
    "AuthLevel": "1.20.0",
    "BlobSource": "1.20.0",
    "CloudEvent": "1.25.0",
    "EventGridEvent": "1.20.0",
    "FunctionApp": "1.20.0",
    "HttpRequest": "1.20.0",
    "HttpResponse": "1.20.0",
    "InputStream": "1.20.0",
    "TimerRequest": "1.20.0",
}
"""The first azure-functions release with each `func.<name>` the app uses.

Measured by installing 1.20.0, 1.21.3, 1.23.0, 1.24.0 and 1.25.0 (`--no-deps`)
and looking each name up; 1.20.0 was the oldest floor ever declared.
"""


def _declared() -> dict[str, Requirement]:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = (Requirement(line) for line in pyproject["project"]["dependencies"])
    return {canonicalize_name(r.name): r for r in requirements}


def _pins(file: str, *, options: tuple[str, ...] = ()) -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate((REPO / file).read_text().splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line or line in options:
            continue
        match = PIN.match(line)
        assert match, f"{file}:{number}: {line!r} is not a `name==version` pin"
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def _pinned() -> dict[str, Version]:
    """requirements.txt's pins (its one option line, the lock as constraints, aside)."""
    return _pins("requirements.txt", options=("-c requirements.lock",))


def _locked() -> dict[str, Version]:
    return _pins("requirements.lock")


def _floor(requirement: Requirement) -> Version:
    floors = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    assert floors, f"pyproject.toml: {requirement} needs a lower bound"
    return max(floors)


def _func_names_used() -> dict[str, set[str]]:
    """`func.<name>` attribute uses, by file, wherever `import azure.functions as func`."""
    files = [REPO / "function_app.py", *sorted((REPO / "ingest_core").rglob("*.py"))]
    used: dict[str, set[str]] = {}
    for path in files:
        tree = ast.parse(path.read_text())
        aliases = {
            alias.asname or alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name == "azure.functions"
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
            ):
                used.setdefault(node.attr, set()).add(str(path.relative_to(REPO)))
    return used


def test_the_lock_files_say_how_they_were_generated():
    lock_head = "\n".join((REPO / "requirements.lock").read_text().splitlines()[:8])
    assert "pip-compile" in lock_head and ".ci/lock" in lock_head
    txt = (REPO / "requirements.txt").read_text()
    assert ".ci/lock" in txt.splitlines()[0] and "pyproject.toml" in txt.splitlines()[0]
    assert "-c requirements.lock" in txt.splitlines(), "the build must install within the lock"


def test_every_runtime_dependency_is_pinned_within_its_declared_range():
    pinned, locked = _pinned(), _locked()
    for name, requirement in _declared().items():
        assert name in pinned, f"requirements.txt lacks {name}: run .ci/lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.txt pins {name}=={pinned[name]}, outside pyproject's "
            f"{requirement.specifier}: run .ci/lock"
        )
        assert locked.get(name) == pinned[name], (
            f"requirements.txt pins {name}=={pinned[name]}, requirements.lock "
            f"{locked.get(name)}: run .ci/lock"
        )


def test_requirements_txt_pins_nothing_pyproject_does_not_declare():
    extra = sorted(set(_pinned()) - set(_declared()))
    assert not extra, f"requirements.txt pins {extra}, not in pyproject.toml: run .ci/lock"


def test_the_lock_pins_the_transitive_dependencies_too():
    locked = _locked()
    for needed in ("azure-core", "azurefunctions-extensions-base", "msal", "cryptography"):
        assert needed in locked, f"{needed} is not pinned: requirements.lock is not a full lock"


def test_the_lock_ships_with_the_app():
    patterns = [
        line.strip() for line in (REPO / ".funcignore").read_text().splitlines() if line.strip()
    ]
    for shipped in ("requirements.txt", "requirements.lock"):
        assert not any(Path(shipped).match(p) for p in patterns), f"{shipped} must ship"


def test_sdk_type_blob_bindings_are_a_runtime_dependency():
    assert "azurefunctions-extensions-bindings-blob" in _declared()


def test_the_azure_functions_floor_has_every_name_the_app_uses():
    floor = _floor(_declared()["azure-functions"])
    used = _func_names_used()
    assert "CloudEvent" in used, "the scan no longer sees ingest_core.functions"
    unknown = sorted(set(used) - set(FUNC_NAMES_SINCE))
    assert not unknown, (
        f"{unknown} used in {[sorted(used[n]) for n in unknown]}: find the first azure-functions "
        "release that has them and add them to FUNC_NAMES_SINCE"
    )
    too_new = {n: FUNC_NAMES_SINCE[n] for n in used if Version(FUNC_NAMES_SINCE[n]) > floor}
    assert not too_new, f"pyproject allows azure-functions {floor}, but {too_new} came later"


def test_installed_azure_functions_has_every_name_the_app_uses():
    import azure.functions as func

    missing = sorted(n for n in _func_names_used() if not hasattr(func, n))
    version = importlib.metadata.version("azure-functions")
    assert not missing, f"azure-functions {version} lacks {missing}"
    if os.environ.get("AZURE_FUNCTIONS_FLOOR_CHECK"):
        assert Version(version) == _floor(_declared()["azure-functions"]), (
            "the floor check must run with the declared floor installed"
        )


@pytest.mark.parametrize("name", ["azure-functions", "azurefunctions-extensions-bindings-blob"])
def test_the_pins_are_what_is_installed_here(name):
    if os.environ.get("AZURE_FUNCTIONS_FLOOR_CHECK"):
        pytest.skip("the floor check installs the floor on purpose")
    installed = Version(importlib.metadata.version(name))
    assert SpecifierSet(f"=={_pinned()[name]}").contains(installed), (
        f"{name} {installed} is installed, requirements.txt pins {_pinned()[name]}: "
        'install with `pip install -c requirements.txt -e ".[test]"`'
    )
