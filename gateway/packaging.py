"""Deploy artefacts built from the repository: function source archives and the URL map's path table.

`package(out)` writes one zip per function, the layout Cloud Run functions
expect at the archive root: `main.py` (from `functions/<name>/main.py`), the
shared `common/` package and `requirements.txt`. Archives are byte-for-byte
reproducible (sorted entries, fixed timestamps and modes), so an unchanged
source gives the same object name in Terraform and no redeploy.

`terraform_paths()` renders `common.paths.url_map()` as the Terraform
variables file `terraform/paths.auto.tfvars.json`; a test checks the committed
file equals it.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from common import paths

ROOT = Path(__file__).resolve().parent.parent
TFVARS = ROOT / "terraform" / "paths.auto.tfvars.json"

# 1980-01-01, the earliest time a zip entry can carry: no build clock leaks in.
_EPOCH = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS = {"__pycache__"}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def _common_files() -> list[Path]:
    files = []
    for path in sorted((ROOT / "common").rglob("*")):
        if not path.is_file() or path.suffix in _SKIP_SUFFIXES:
            continue
        if _SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
            continue
        files.append(path)
    return files


def archive_entries(name: str) -> list[tuple[str, Path]]:
    """(name in the archive, file in the repository) of function `name`'s source."""
    main = ROOT / "functions" / name / "main.py"
    if not main.is_file():
        raise FileNotFoundError(f"no function source at {main}")
    entries = [("main.py", main), ("requirements.txt", ROOT / "requirements.txt")]
    entries += [(path.relative_to(ROOT).as_posix(), path) for path in _common_files()]
    return sorted(entries)


def build_archive(name: str, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{name}.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for arcname, source in archive_entries(name):
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, source.read_bytes())
    return target


def package(out_dir: Path) -> list[Path]:
    """One source archive per function in `out_dir`."""
    return [build_archive(name, out_dir) for name in paths.FUNCTIONS]


def terraform_paths() -> str:
    """The text of terraform/paths.auto.tfvars.json for the current path table."""
    # No comment key: Terraform warns about any name it has no variable for.
    document = {
        "gateway_paths": paths.url_map(),
        "default_function": paths.DEFAULT_FUNCTION,
    }
    return json.dumps(document, indent=2) + "\n"


def write_terraform_paths(target: Path = TFVARS) -> bool:
    """Write the tfvars file; True when it changed."""
    text = terraform_paths()
    if target.exists() and target.read_text(encoding="utf-8") == text:
        return False
    target.write_text(text, encoding="utf-8")
    return True
