"""checkov over terraform/, offline, with a baseline of accepted findings, each with its reason.

checkov depends on bc-python-hcl2, which installs the same `hcl2` module as
python-hcl2 (used by tests/test_terraform.py), so it lives in its own
virtualenv, `.venv-checkov`, created here on first use from
requirements-checkov.txt (pip may use its cache; only PyPI is needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TERRAFORM = ROOT / "terraform"
VENV = ROOT / ".venv-checkov"
REQUIREMENTS = ROOT / "requirements-checkov.txt"
BASELINE = TERRAFORM / "checkov-baseline.yaml"


def checkov_bin() -> Path:
    """.venv-checkov/bin/checkov, (re)installed when requirements-checkov.txt changed."""
    stamp = VENV / ".installed"
    wanted = REQUIREMENTS.read_text(encoding="utf-8")
    binary = VENV / "bin" / "checkov"
    if binary.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return binary
    if not (VENV / "bin" / "python").exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run(
        [
            str(VENV / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "-r",
            str(REQUIREMENTS),
        ],
        check=True,
        timeout=900,
    )
    stamp.write_text(wanted, encoding="utf-8")
    return binary


def run_checkov() -> dict[str, set[str]]:
    """Failed check id -> resources, for the whole of terraform/ (no skips: the baseline is compared here)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["BC_SKIP_MAPPING"] = "TRUE"
    result = subprocess.run(
        [
            str(checkov_bin()),
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--compact",
            "--quiet",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode in (0, 1), f"checkov failed to run:\n{result.stderr[-3000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    failed: dict[str, set[str]] = {}
    for entry in reports:
        assert entry["summary"]["parsing_errors"] == 0, entry["summary"]
        assert entry["summary"]["resource_count"] > 30, "checkov saw too few resources"
        for check in entry["results"]["failed_checks"]:
            failed.setdefault(check["check_id"], set()).add(check["resource"])
    return failed


@pytest.mark.slow
def test_checkov_finds_nothing_but_the_baseline() -> None:
    baseline = yaml.safe_load(BASELINE.read_text(encoding="utf-8"))
    for check_id, reason in baseline.items():
        assert isinstance(reason, str) and len(reason.split()) >= 8, f"{check_id}: write the reason it is accepted"
    failed = run_checkov()
    unexpected = {k: sorted(v) for k, v in failed.items() if k not in baseline}
    assert not unexpected, f"checkov findings not in {BASELINE.name}: {unexpected}"
    stale = set(baseline) - set(failed)
    assert not stale, f"baseline entries that no longer fire (remove them): {sorted(stale)}"


if __name__ == "__main__":  # `python tests/test_checkov.py`: the findings, for editing the baseline
    json.dump({k: sorted(v) for k, v in run_checkov().items()}, sys.stdout, indent=2)
