"""`${ENV}`, `${file:/abs}` and `${secret:projects/…}` references in gateway.yaml values."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

_REF = re.compile(r"\$\{([^}]*)\}")


def secret_access(name: str) -> str:
    """Read a Secret Manager version with the function's own identity."""
    from common.config import secret_manager as secrets  # lazy: the client library is heavy

    return secrets.access(name)


def expand(value: Any, path: str, problems: list[str], resolve_secret: Callable[[str], str]) -> Any:
    if isinstance(value, dict):
        return {k: expand(v, join(path, str(k)), problems, resolve_secret) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, f"{path}[{i}]", problems, resolve_secret) for i, v in enumerate(value)]
    if not isinstance(value, str) or "${" not in value:
        return value

    def one(match: re.Match[str]) -> str:
        ref = match.group(1).strip()
        if ref.startswith("file:"):
            file_path = ref[5:]
            if not os.path.isabs(file_path):
                problems.append(f"{path}: '${{{ref}}}' must name an absolute path")
                return ""
            try:
                with open(file_path, encoding="utf-8") as handle:
                    return handle.read().strip()
            except OSError as exc:
                problems.append(f"{path}: cannot read '{file_path}' ({exc.strerror}); create the file or fix the path")
                return ""
        if ref.startswith("secret:"):
            name = ref[7:]
            if not re.fullmatch(r"projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?", name):
                problems.append(
                    f"{path}: '{name}' is not a secret version name; write "
                    "projects/PROJECT/secrets/SECRET/versions/VERSION"
                )
                return ""
            try:
                return resolve_secret(name)
            except Exception as exc:  # any failure of the API is the operator's to fix
                problems.append(
                    f"{path}: cannot read secret '{name}' ({type(exc).__name__}: {exc}); "
                    "check the secret exists and the service account has "
                    "roles/secretmanager.secretAccessor on it"
                )
                return ""
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", ref):
            problems.append(
                f"{path}: '${{{ref}}}' is not a valid reference; use ${{NAME}}, ${{file:/path}} or ${{secret:projects/…}}"
            )
            return ""
        if ref not in os.environ:
            problems.append(f"{path}: environment variable {ref} is not set; set it or replace '${{{ref}}}'")
            return ""
        return os.environ[ref]

    return _REF.sub(one, value)


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
