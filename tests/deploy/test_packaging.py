"""The deploy artefacts: one source archive per function that works on its own.

The slow test does what Cloud Run functions' build does: a fresh virtualenv
with only requirements.txt installed (pip may use its local cache), each
archive unpacked alone, its `main` loaded by functions-framework and probed
(/healthz, and /readyz against a real PostgreSQL) with nothing from the
repository on the path.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import venv
import zipfile
from pathlib import Path

import pytest
from support import base_config, write_config

from common import paths
from gateway import packaging

ROOT = Path(__file__).resolve().parents[2]


def test_archive_layout(tmp_path: Path) -> None:
    archives = packaging.package(tmp_path)
    assert [a.name for a in archives] == [f"{name}.zip" for name in paths.FUNCTIONS]
    common = {p.relative_to(ROOT).as_posix() for p in (ROOT / "common").rglob("*") if p.is_file()}
    common = {p for p in common if "__pycache__" not in p and not p.endswith(".pyc")}
    for name, archive in zip(paths.FUNCTIONS, archives, strict=True):
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            assert zf.read("main.py") == (ROOT / "functions" / name / "main.py").read_bytes()
            assert zf.read("requirements.txt") == (ROOT / "requirements.txt").read_bytes()
        assert common <= names, sorted(common - names)
        assert any(n.startswith("common/db/migrations/") and n.endswith(".sql") for n in names)
        assert not any("__pycache__" in n or n.startswith(("gateway/", "tests/", "functions/")) for n in names)


def test_archives_are_reproducible(tmp_path: Path) -> None:
    first = [a.read_bytes() for a in packaging.package(tmp_path / "a")]
    second = [a.read_bytes() for a in packaging.package(tmp_path / "b")]
    assert first == second


PROBE = textwrap.dedent(
    """
    import json, sys
    from functions_framework import create_app
    name = sys.argv[1]
    app = create_app(name, "main.py")
    client = app.test_client()
    out = {}
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        out[path] = [response.status_code, response.headers.get("x-gateway-function"), response.get_json()]
    import main
    out["modules"] = sorted(m for m in sys.modules if m.split(".")[0] in ("common", "gateway", "tests"))
    out["main_file"] = main.__file__
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_each_archive_runs_in_a_fresh_virtualenv(tmp_path: Path, database_url: str) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-compile",
            "-r",
            str(ROOT / "requirements.txt"),
        ],
        check=True,
        timeout=600,
    )
    config = write_config(tmp_path, base_config(database_url))
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "GATEWAY_"))}
    clean_env["GATEWAY_CONFIG"] = str(config)
    for archive in packaging.package(tmp_path / "dist"):
        name = archive.stem
        unpacked = tmp_path / "src" / name
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(unpacked)
        result = subprocess.run(
            [str(python), "-I", "-c", f"import sys; sys.path.insert(0, '.'); exec({PROBE!r})", name],
            cwd=unpacked,
            env=clean_env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{name}: {result.stderr[-3000:]}"
        out = json.loads(result.stdout.strip().splitlines()[-1])
        assert out["/healthz"][:2] == [200, name], out
        assert out["/readyz"][:2] == [200, name], out
        assert Path(out["main_file"]).resolve() == (unpacked / "main.py").resolve()
        assert not any(m.split(".")[0] in ("gateway", "tests") for m in out["modules"]), out["modules"]
        assert "common" in out["modules"]
