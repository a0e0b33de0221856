"""Offline CF checks: cfchecks (with local tables) and the IOOS compliance-checker (cf:1.8).

Both checkers are optional dependencies (``pip install climgen[check]``); cfchecks also needs
the udunits2 C library (Debian: libudunits2-0). Nothing here touches the network: the CF
standard-name table is the one compliance-checker ships, and the area-type and region tables
are small local copies shipped with climgen.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from climgen.errors import MissingDependencyError

CF_VERSION = "1.8"


@dataclass
class CheckResult:
    """The outcome of one checker on one file."""

    checker: str
    errors: int
    warnings: int
    messages: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.errors == 0

    def summary(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        lines = [f"{self.checker}: {status} ({self.errors} errors, {self.warnings} warnings)"]
        lines += [f"  {message}" for message in self.messages]
        return "\n".join(lines)


def standard_name_table() -> Path:
    """The CF standard-name table shipped inside compliance-checker."""
    try:
        import compliance_checker
    except ImportError as err:
        raise MissingDependencyError("CF checks need compliance-checker: pip install 'climgen[check]'") from err
    return Path(compliance_checker.__file__).parent / "data" / "cf-standard-name-table.xml"


def run_cfchecks(path: str | Path) -> CheckResult:
    """cfchecks with local tables; counts ERROR and WARN lines."""
    tables = resources.files("climgen") / "data" / "cf"
    command = [
        sys.executable,
        "-m",
        "cfchecker.cfchecks",
        "-v",
        CF_VERSION,
        "-s",
        str(standard_name_table()),
        "-a",
        str(tables / "area-type-table.xml"),
        "-r",
        str(tables / "standardized-region-list.xml"),
        str(path),
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    output = completed.stdout + completed.stderr
    if "No module named" in output:
        raise MissingDependencyError("CF checks need cfchecker: pip install 'climgen[check]'")
    if "udunits" in output.lower() and "ERRORS detected" not in output:
        raise MissingDependencyError("cfchecks needs the udunits2 library (Debian: apt-get install libudunits2-0)")
    errors = re.search(r"ERRORS detected:\s*(\d+)", output)
    warnings = re.search(r"WARNINGS given:\s*(\d+)", output)
    if errors is None:
        return CheckResult("cfchecks", 1, 0, [f"cfchecks did not finish: {output.strip().splitlines()[-1:]}"])
    messages = [line.strip() for line in output.splitlines() if line.startswith(("ERROR:", "WARN:", "ERROR (", "WARN ("))]
    return CheckResult("cfchecks", int(errors.group(1)), int(warnings.group(1)) if warnings else 0, messages)


def run_compliance_checker(path: str | Path, test: str = f"cf:{CF_VERSION}") -> CheckResult:
    """IOOS compliance-checker ``test`` (``cf:1.8``, or ``acdd:1.3`` for catalogue discovery
    attributes): high findings count as errors, medium as warnings."""
    environment = dict(os.environ, CF_STANDARD_NAME_TABLE=str(standard_name_table()))
    with tempfile.TemporaryDirectory() as folder:
        report = Path(folder) / "report.json"
        command = ["compliance-checker", f"--test={test}", "--format=json", f"--output={report}", str(path)]
        executable = Path(sys.executable).with_name("compliance-checker")
        if executable.exists():
            command[0] = str(executable)
        completed = subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)
        if not report.exists():
            raise MissingDependencyError(
                f"compliance-checker did not run: {(completed.stderr or completed.stdout).strip()[-300:]}"
            )
        document = json.loads(report.read_text())
    results = document[test]
    findings = {}
    for priority in ("high", "medium"):
        failed = [item for item in results.get(f"{priority}_priorities", []) if item["value"][0] < item["value"][1]]
        findings[priority] = failed
    messages = [
        f"{priority}: {item['name']}: {'; '.join(item.get('msgs', []))}" for priority, items in findings.items() for item in items
    ]
    return CheckResult(f"compliance-checker {test}", len(findings["high"]), len(findings["medium"]), messages)


def run_checks(path: str | Path, acdd: bool = False) -> list[CheckResult]:
    """Both CF checkers on one file; with ``acdd``, also the ACDD-1.3 discovery check (what a
    catalogue needs: its medium findings are the attributes only the user can state)."""
    _check_readable(Path(path))
    results = [run_cfchecks(path), run_compliance_checker(path)]
    return results + [run_compliance_checker(path, "acdd:1.3")] if acdd else results


def _check_readable(path: Path) -> None:
    """A clear error for what the checkers cannot read: a zarr store, a file that is not NetCDF."""
    import netCDF4

    from climgen.errors import InputError

    if path.is_dir():
        raise InputError(
            f"{path} is a folder (a zarr store?): the CF checkers read NetCDF files; write the output as .nc to check it"
        )
    try:
        netCDF4.Dataset(path).close()
    except OSError as err:
        raise InputError(
            f"cannot read {path} as NetCDF: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
        ) from None
