"""The model catalog: client model ids, family aliases, and their upstream ids.

Claude Code sends Anthropic ids, sometimes dated (`claude-haiku-4-5-20251001`)
or with a context suffix (`claude-opus-4-6[1m]`); policies name models by id,
by glob (`claude-sonnet-*`) or by family alias (`opus`, `sonnet`, `haiku`).
Everything here compares canonical ids, so one model has one spelling.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_M = TypeVar("_M", bound=_HasId)

FAMILIES = ("opus", "sonnet", "haiku")
_DATE = re.compile(r"(?:-|@)(\d{8})$")
_SUFFIX = re.compile(r"\[[^\]]*\]$")


def canonical(model_id: str) -> str:
    """Lower-case id without a `[1m]`-style suffix, a `-YYYYMMDD` or `@YYYYMMDD` date."""
    text = _SUFFIX.sub("", model_id.strip().lower())
    return _DATE.sub("", text)


def family(model_id: str) -> str | None:
    parts = canonical(model_id).split("-")
    for fam in FAMILIES:
        if fam in parts:
            return fam
    return None


def entry_matches(entry: str, model_id: str, exact: bool = False) -> bool:
    """Does a policy entry cover `model_id`? Claude Code's own reading of availableModels.

    As Claude Code 2.1.x reads `availableModels` (and `deniedModels`): a family
    alias (`opus`) covers the family; any other entry covers its id in every
    spelling (dates, `[1m]`, `-fast`, with or without `claude-`) and, unless
    `exact` (`availableModelsMatch: exact`), every id that extends it
    (`claude-opus-5` covers `claude-opus-5-5`). Globs (`claude-sonnet-*`) are
    ours; Claude Code does not expand them (the config check warns).
    """
    want = canonical(entry)
    have = canonical(model_id)
    if want in FAMILIES:
        return family(have) == want
    if any(ch in want for ch in "*?["):
        return fnmatch.fnmatchcase(have, want)
    want = want.removeprefix("claude-")
    have = have.removeprefix("claude-").removesuffix("-fast")
    if have == want:
        return True
    return not exact and have.startswith(want + "-")


def allowed_by_settings(settings: Mapping[str, Any], model_id: str) -> bool:
    """Claude Code's reading of a settings block's model rules for its picker:
    `deniedModels` first, then `availableModels` (read per `availableModelsMatch`)."""
    denied = settings.get("deniedModels")
    if isinstance(denied, list) and any(isinstance(e, str) and entry_matches(e, model_id) for e in denied):
        return False
    entries = settings.get("availableModels")
    if entries is None:
        return True
    exact = settings.get("availableModelsMatch") == "exact"
    return any(isinstance(e, str) and entry_matches(e, model_id, exact) for e in entries)


def find(configured: Iterable[_M], model_id: str) -> _M | None:
    """The configured model a client id names (dated spellings included)."""
    have = canonical(model_id)
    for model in configured:
        if canonical(model.id) == have:
            return model
    return None


def display_name(model_id: str) -> str:
    """`claude-sonnet-4-5` -> `Claude Sonnet 4.5`."""
    parts = canonical(model_id).split("-")
    if parts and parts[0] == "claude":
        parts = parts[1:]
    words: list[str] = []
    numbers: list[str] = []
    for part in parts:
        if part.isdigit():
            numbers.append(part)
        else:
            words.append(part.capitalize())
    return " ".join(["Claude", *words] + ([".".join(numbers)] if numbers else []))
