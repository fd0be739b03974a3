"""The audit wrapper must never call a run that checked nothing "clean"."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

AUDIT_SCRIPT = Path(__file__).resolve().parents[2] / ".ci" / "audit.py"


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ci_audit", AUDIT_SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def _dep(name: str, **fields: object) -> dict[str, object]:
    return {"name": name, "version": "1.0", **fields}


def test_a_known_vulnerability_fails_even_when_unchecked_packages_are_allowed(
        audit: ModuleType) -> None:
    report = {"dependencies": [
        _dep("safe", vulns=[]),
        _dep("leaky", vulns=[{"id": "PYSEC-2099-1", "fix_versions": ["1.1"]}]),
        {"name": "lost", "skip_reason": "Dependency not found on PyPI"},
    ]}
    summary = audit.summarise(report)
    assert summary.checked == 2
    assert [f.package for f in summary.findings] == ["leaky"]
    assert summary.findings[0].fixed_in == ("1.1",)
    assert summary.exit_code(allow_unchecked=True) == audit.EXIT_VULNERABLE


def test_a_run_that_could_not_look_packages_up_is_not_clean(audit: ModuleType) -> None:
    report = {"dependencies": [
        {"name": "a", "skip_reason": "Dependency not found on PyPI and could not be audited"},
        _dep("b", vulns=[]),
    ]}
    summary = audit.summarise(report)
    assert len(summary.unchecked) == 1 and summary.checked == 1
    assert summary.exit_code(allow_unchecked=False) == audit.EXIT_UNCHECKED
    assert summary.exit_code(allow_unchecked=True) == 0
    assert '"unchecked": 1' in summary.as_json()


def test_everything_checked_and_nothing_known_passes(audit: ModuleType) -> None:
    summary = audit.summarise({"dependencies": [_dep("a", vulns=[]), _dep("b", vulns=[])]})
    assert summary.exit_code(allow_unchecked=False) == 0
    assert summary.findings == ()
