"""Model ids: one normaliser for every spelling, catalogue families (fable and mythos too), display names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.core import catalog, models

FAMILIES = ["opus", "sonnet", "haiku", "fable", "mythos"]


def test_families_come_from_the_catalogue() -> None:
    assert sorted(models.FAMILIES) == sorted(FAMILIES)
    for model in catalog.MODELS:
        assert models.family(model.id) == model.family
        assert models.entry_matches(model.family, model.id)


@given(st.sampled_from(FAMILIES), st.integers(1, 9), st.integers(0, 9))
def test_family_alias_matches_every_spelling(fam: str, major: int, minor: int) -> None:
    model_id = f"claude-{fam}-{major}-{minor}"
    for spelling in (model_id, model_id.upper(), f"{model_id}-20250101", f"{model_id}@20250101", f"{model_id}[1m]"):
        assert models.entry_matches(fam, spelling)
        assert models.canonical(spelling) == model_id
        others = set(FAMILIES) - {fam}
        assert not any(models.entry_matches(o, spelling) for o in others)


def test_every_catalogue_spelling_is_its_model() -> None:
    for model in catalog.MODELS:
        spellings = [*model.spellings, f"{model.id}[1m]", model.id.upper(), f"publishers/anthropic/models/{model.id}"]
        if model.vertex_id:
            spellings.append(f"publishers/anthropic/models/{model.vertex_id}")
        for spelling in spellings:
            assert models.canonical(spelling) == model.id, spelling
            assert models.lookup(spelling) is model, spelling


def test_old_and_revision_spellings() -> None:
    assert models.canonical("claude-3-5-sonnet-v2@20241022") == "claude-3-5-sonnet"
    assert models.canonical("claude-sonnet-4-20250514") == "claude-sonnet-4-0"
    assert models.canonical("claude-opus-4@20250514") == "claude-opus-4-0"
    assert models.canonical("claude-3-7-sonnet-latest") == "claude-3-7-sonnet"
    assert models.lookup("claude-mystery-9") is None
    assert models.canonical("Claude-Mystery-9-20260101[1m]") == "claude-mystery-9"


def test_policy_entries_read_as_written() -> None:
    # A short entry is a prefix (Claude Code's reading), not the catalogue model it also spells.
    assert models.entry_matches("claude-opus-4", "claude-opus-4-7")
    assert models.entry_matches("claude-opus-4", "claude-opus-4@20250514")
    assert models.entry_matches("claude-opus-4-0", "claude-opus-4-20250514")
    assert not models.entry_matches("claude-opus-4-0", "claude-opus-4-7")
    assert not models.entry_matches("claude-opus-4-7", "claude-opus-4-7-1", exact=True)
    assert models.entry_matches("claude-sonnet-*", "claude-sonnet-4-20250514")
    assert models.entry_matches("mythos", "claude-mythos-5-2") and not models.entry_matches("opus", "claude-mythos-5")


def test_display_name() -> None:
    assert models.display_name("claude-sonnet-4-5-20250929") == "Sonnet 4.5"
    assert models.display_name("claude-3-5-sonnet-v2@20241022") == "Sonnet 3.5"
    assert models.display_name("claude-fable-5-1") == "Fable 5.1"
    assert models.display_name("claude-opus-9-1") == "Opus 9.1"  # not in the catalogue: same style
