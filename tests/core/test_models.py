"""Model ids: family aliases match every spelling; display names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from common.core import models


@given(st.sampled_from(["opus", "sonnet", "haiku"]), st.integers(1, 9), st.integers(0, 9))
def test_family_alias_matches_every_spelling(fam: str, major: int, minor: int) -> None:
    model_id = f"claude-{fam}-{major}-{minor}"
    for spelling in (model_id, model_id.upper(), f"{model_id}-20250101", f"{model_id}@20250101", f"{model_id}[1m]"):
        assert models.entry_matches(fam, spelling)
        assert models.canonical(spelling) == model_id
        others = {"opus", "sonnet", "haiku"} - {fam}
        assert not any(models.entry_matches(o, spelling) for o in others)


def test_display_name() -> None:
    assert models.display_name("claude-sonnet-4-5-20250929") == "Claude Sonnet 4.5"
