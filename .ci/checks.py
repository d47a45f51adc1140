"""Small CI checks that .ci/run calls; see the comments there.

`python .ci/checks.py doctor REPORT.json`: fail unless azure-functions-doctor's JSON report has
no fail and no warning but the expected ones.
`python .ci/checks.py azure-functions-floor`: print the lowest azure-functions pyproject allows.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent

EXPECTED_WARNINGS = {
    "check_func_cli": "Core Tools cannot be installed here (its installer downloads from a CDN)",
    "check_func_core_tools_version": "the same: no Core Tools",
    "check_local_settings": "local.settings.json is a developer's file, never committed",
    "check_app_insights": "reads only local.settings.json and the environment",
}


def doctor(report_path: str) -> int:
    """Print every finding of the report; 1 when one is not an expected warning."""
    report = json.loads(Path(report_path).read_text())
    findings = [
        (item["status"], item["rule_id"], item["label"])
        for section in report["results"]
        for item in section["items"]
        if item["status"] not in ("pass", "skip")
    ]
    unexpected = [f for f in findings if f[0] != "warn" or f[1] not in EXPECTED_WARNINGS]
    for status, rule, label in findings:
        expected = (status, rule, label) not in unexpected
        why = f" (expected: {EXPECTED_WARNINGS[rule]})" if expected else ""
        print(f"azure-functions-doctor: {status} {rule}: {label}{why}")
    if unexpected:
        print(
            f"azure-functions-doctor: {len(unexpected)} unexpected finding(s); run "
            "`azure-functions-doctor doctor --path . -v` for the fix",
            file=sys.stderr,
        )
        return 1
    return 0


def azure_functions_floor() -> int:
    """Print the `>=` bound pyproject.toml gives azure-functions."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    for line in pyproject["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == "azure-functions":
            print(next(s.version for s in requirement.specifier if s.operator == ">="))
            return 0
    print("pyproject.toml declares no azure-functions", file=sys.stderr)
    return 1


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["doctor", report]:
            sys.exit(doctor(report))
        case ["azure-functions-floor"]:
            sys.exit(azure_functions_floor())
        case _:
            sys.exit(__doc__)
