"""Model ids: the one normaliser, catalogue lookups, family aliases, and Claude Code's reading of model lists.

Claude Code sends Anthropic ids, sometimes dated (`claude-haiku-4-5-20251001`)
or with a context suffix (`claude-opus-4-6[1m]`); Vertex spells them with
`@` dates (`claude-3-5-sonnet-v2@20241022`); policies name models by id, by
glob (`claude-sonnet-*`) or by family alias (`opus`, `sonnet`, `haiku`,
`fable`, `mythos`: the catalogue's families). `canonical()` maps every
spelling of a catalogue model to its catalogue id, so one model has one
spelling everywhere (policy, routing, pricing, the ledger).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol, TypeVar

from common.core import catalog


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_M = TypeVar("_M", bound=_HasId)

FAMILIES: tuple[str, ...] = catalog.FAMILIES
_DATE = re.compile(r"(?:-|@)\d{8}$")
_SUFFIX = re.compile(r"\[[^\]]*\]$")
# Vertex / Bedrock revision tags and the API's moving alias: not part of the model's name.
_NOISE = re.compile(r"(?:-v\d+(?::\d+)?|-latest)$")


def spelling(model_id: str) -> str:
    """The id as a string, normalised: lower case, no `publishers/…/models/` path,
    no `[1m]`-style suffix, no `-YYYYMMDD` / `@YYYYMMDD` date, `-v2` or `-latest`."""
    text = _SUFFIX.sub("", model_id.strip().lower().rsplit("/", 1)[-1])
    while True:  # a date may precede a revision: claude-3-5-sonnet-v2@20241022
        shorter = _NOISE.sub("", _DATE.sub("", text))
        if shorter == text:
            return text
        text = shorter


_INDEX: dict[str, catalog.Model] = {spelling(s): m for m in catalog.MODELS for s in m.spellings}


def lookup(model_id: str) -> catalog.Model | None:
    """The catalogue model any spelling names (`claude-opus-4@20250514` -> Opus 4), or None."""
    return _INDEX.get(spelling(model_id))


def canonical(model_id: str) -> str:
    """The catalogue id of a known model in any spelling, else `spelling(model_id)`."""
    text = spelling(model_id)
    known = _INDEX.get(text)
    return known.id if known is not None else text


def family(model_id: str) -> str | None:
    known = lookup(model_id)
    if known is not None:
        return known.family
    parts = spelling(model_id).split("-")
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
    ours; Claude Code does not expand them (the config check warns). The entry
    is read as written (`claude-opus-4` is a prefix, not Opus 4 itself); the
    model is read both as spelled and as its catalogue id.
    """
    want = spelling(entry)
    if want in FAMILIES:
        return family(model_id) == want
    haves = {spelling(model_id), canonical(model_id)}
    if any(ch in want for ch in "*?["):
        return any(fnmatch.fnmatchcase(have, want) for have in haves)
    want = want.removeprefix("claude-")
    for have in haves:
        have = have.removeprefix("claude-").removesuffix("-fast")
        if have == want or (not exact and have.startswith(want + "-")):
            return True
    return False


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
    """The catalogue's name (`claude-sonnet-4-5-20250929` -> `Sonnet 4.5`); for an
    unknown id the same style from its parts (`claude-opus-9-1` -> `Opus 9.1`)."""
    known = lookup(model_id)
    if known is not None:
        return known.display_name
    parts = spelling(model_id).split("-")
    if parts and parts[0] == "claude":
        parts = parts[1:]
    words: list[str] = []
    numbers: list[str] = []
    for part in parts:
        if part.isdigit():
            numbers.append(part)
        else:
            words.append(part.capitalize())
    return " ".join([*words] + ([".".join(numbers)] if numbers else [])) or model_id
