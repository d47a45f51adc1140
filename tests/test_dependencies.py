"""Dependencies: pyproject.toml is the source, requirements.txt its pinned lock, floors honest.

requirements.txt is what the Functions build installs; it is generated from
pyproject.toml by pip-compile (its header says how). These tests hold the two
together and check the declared azure-functions floor against the `func.*`
names the app uses. `.ci/run` runs the `installed_azure_functions` test, and
the event tests, a second time with the floor version itself on the path
(AZURE_FUNCTIONS_FLOOR_CHECK set): the lowest version allowed is tested.
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


def _pinned() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for number, raw in enumerate((REPO / "requirements.txt").read_text().splitlines(), 1):
        line = raw.split("#")[0].strip()
        if not line:
            continue
        match = PIN.match(line)
        assert match, f"requirements.txt:{number}: {line!r} is not a `name==version` pin"
        pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


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


def test_requirements_txt_says_how_it_was_generated():
    head = "\n".join((REPO / "requirements.txt").read_text().splitlines()[:8])
    assert "pip-compile" in head and "pyproject.toml" in head, (
        "requirements.txt must start with the pip-compile header naming pyproject.toml"
    )


def test_every_runtime_dependency_is_pinned_within_its_declared_range():
    pinned = _pinned()
    for name, requirement in _declared().items():
        assert name in pinned, f"requirements.txt lacks {name}: regenerate it (see its header)"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements.txt pins {name}=={pinned[name]}, outside pyproject's "
            f"{requirement.specifier}: regenerate it (see its header)"
        )


def test_the_lock_pins_the_transitive_dependencies_too():
    pinned = _pinned()
    for needed in ("azure-core", "azurefunctions-extensions-base", "msal"):
        assert needed in pinned, f"{needed} is not pinned: requirements.txt is not a full lock"


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
