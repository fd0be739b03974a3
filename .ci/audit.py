"""Dependency audit: run pip-audit on the pinned lock file and say plainly what was checked.

Why a wrapper: pip-audit exits 0 and prints "No known vulnerabilities found" even when it
could not look a single package up (every dependency "skipped" because the vulnerability
service was unreachable). A green audit that checked nothing is worse than none, so this
script separates three outcomes:

- a pinned package has a known vulnerability: always a failure (exit 1), listed with its
  advisory ids and the versions that fix it;
- some packages could not be checked: a failure too (exit 2), unless ``--allow-unchecked``
  is given, in which case the count is printed loudly and the run passes (CI uses this
  where the vulnerability service is unreachable from the build machine);
- everything was checked and nothing is known: success (exit 0).

The last line of output is a one-line JSON summary.

    python .ci/audit.py requirements.lock [--allow-unchecked] [--pip-audit PATH]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_VULNERABLE = 1
EXIT_UNCHECKED = 2


@dataclass(frozen=True)
class Finding:
    """One known vulnerability of one pinned package."""

    package: str
    version: str
    advisory: str
    fixed_in: tuple[str, ...]


@dataclass(frozen=True)
class AuditSummary:
    """What an audit report says, counted."""

    checked: int
    unchecked: tuple[str, ...]
    findings: tuple[Finding, ...] = field(default=())

    def exit_code(self, allow_unchecked: bool) -> int:
        """1 for any finding, 2 for unchecked packages (unless allowed), else 0."""
        if self.findings:
            return EXIT_VULNERABLE
        if self.unchecked and not allow_unchecked:
            return EXIT_UNCHECKED
        return 0

    def as_json(self) -> str:
        return json.dumps({
            "checked": self.checked, "unchecked": len(self.unchecked),
            "vulnerabilities": len(self.findings),
            "vulnerable_packages": sorted({f.package for f in self.findings}),
        })


def summarise(report: dict[str, Any]) -> AuditSummary:
    """Count a pip-audit JSON report (``-f json``): checked, unchecked and vulnerable pins."""
    checked = 0
    unchecked: list[str] = []
    findings: list[Finding] = []
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            unchecked.append(f"{dep.get('name')}: {dep['skip_reason']}")
            continue
        checked += 1
        for vuln in dep.get("vulns", []):
            findings.append(Finding(dep["name"], dep.get("version", "?"), vuln.get("id", "?"),
                                    tuple(vuln.get("fix_versions", []))))
    return AuditSummary(checked, tuple(unchecked), tuple(findings))


def run_pip_audit(pip_audit: str, lock: Path) -> dict[str, Any]:
    """Run pip-audit on exactly the pins in ``lock`` (no resolution) and return its report."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        proc = subprocess.run(
            [pip_audit, "--requirement", str(lock), "--no-deps", "--disable-pip",
             "--progress-spinner", "off", "--format", "json", "--output", str(out)],
            capture_output=True, text=True, check=False)
        if not out.exists():
            sys.stderr.write(proc.stdout + proc.stderr)
            raise SystemExit(f"pip-audit failed (exit {proc.returncode}) without a report; "
                             "see its output above")
        report: dict[str, Any] = json.loads(out.read_text())
        return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lock", type=Path, help="pinned requirements (name==version per line)")
    parser.add_argument("--pip-audit", default="pip-audit", help="the pip-audit executable")
    parser.add_argument("--allow-unchecked", action="store_true",
                        help="pass when packages could not be looked up (still fail on findings)")
    args = parser.parse_args(argv)
    summary = summarise(run_pip_audit(args.pip_audit, args.lock))
    for finding in summary.findings:
        fix = ", ".join(finding.fixed_in) or "no fixed release yet"
        print(f"VULNERABLE {finding.package}=={finding.version}: {finding.advisory} "
              f"(fixed in: {fix})")
    if summary.unchecked:
        print(f"NOT AUDITED: {len(summary.unchecked)} of "
              f"{len(summary.unchecked) + summary.checked} pinned packages could not be looked "
              "up (is the vulnerability service reachable? pip-audit asks "
              "https://pypi.org/pypi/<name>/<version>/json). First few:")
        for line in summary.unchecked[:5]:
            print(f"  {line}")
    print(summary.as_json())
    return summary.exit_code(args.allow_unchecked)


if __name__ == "__main__":
    raise SystemExit(main())
