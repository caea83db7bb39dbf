"""cloudbuild.yaml parses, and every file, directory and module its steps name exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _build() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "cloudbuild.yaml").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _step_text(step: dict[str, Any]) -> str:
    return " ".join(str(a) for a in step.get("args", []))


def test_steps_in_order_and_substitutions() -> None:
    build = _build()
    ids = [step["id"] for step in build["steps"]]
    assert ids.index("test") < ids.index("package") < ids.index("terraform-apply")
    subs = build["substitutions"]
    assert {"_REGION", "_NAME_PREFIX", "_TF_STATE_BUCKET"} <= set(subs)
    used = set(re.findall(r"\$\{(_[A-Z_]+)\}", (ROOT / "cloudbuild.yaml").read_text(encoding="utf-8")))
    assert used <= set(subs), used - set(subs)
    apply = _step_text(next(s for s in build["steps"] if s["id"] == "terraform-apply"))
    for var in ("project_id=${PROJECT_ID}", "region=${_REGION}", "name_prefix=${_NAME_PREFIX}"):
        assert var in apply


def test_referenced_files_exist() -> None:
    build = _build()
    checked = 0
    for step in build["steps"]:
        workdir = ROOT / step.get("dir", ".")
        assert workdir.is_dir(), step.get("dir")
        text = _step_text(step)
        for requirement in re.findall(r"-r\s+(\S+)", text):
            assert (workdir / requirement).is_file(), requirement
            checked += 1
        for module in re.findall(r"python -m (\w+)", text):
            if module in {"venv", "pytest", "pip"}:
                continue
            assert (ROOT / module / "__main__.py").is_file(), module
            checked += 1
        for command in re.findall(r"python -m gateway (\w+)", text):
            from gateway import cli

            parser = cli.build_parser()
            choices = next(a for a in parser._actions if a.dest == "command").choices
            assert command in choices, command
            checked += 1
        for directory in re.findall(r"(?<![\w/.-])(tests|dist|terraform)(?=[\s/]|$)", text):
            if directory != "dist":  # built by the package step
                assert (ROOT / directory).is_dir(), directory
        source_dir = re.search(r"source_dir=(\S+)", text)
        if source_dir:
            assert (workdir / source_dir.group(1)).resolve() == (ROOT / "dist").resolve()
    assert checked >= 4
