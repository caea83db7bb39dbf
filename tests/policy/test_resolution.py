"""Policy resolution: first match wins, the catch-all last, models as availableModels lists them."""

from __future__ import annotations

from support import parsed_config

from common import policy

POLICIES = {
    "managed": {
        "policies": [
            {"name": "ml", "match": {"groups": ["ml-research"]}, "settings": {"availableModels": ["opus", "sonnet"]}},
            {"name": "contractors", "match": {"groups": ["Contractors"]}, "settings": {"availableModels": ["haiku"]}},
            {"name": "all", "settings": {"availableModels": ["sonnet", "haiku"]}},
        ]
    }
}


def test_first_match_wins_and_catch_all_last() -> None:
    cfg = parsed_config(POLICIES)
    assert policy.resolve(cfg, ["ml-research", "contractors"])[1].name == "ml"  # type: ignore[index]
    assert policy.resolve(cfg, ["CONTRACTORS"])[1].name == "contractors"  # type: ignore[index]
    assert policy.resolve(cfg, [])[1].name == "all"  # type: ignore[index]
    no_catch_all = parsed_config({"managed": {"policies": POLICIES["managed"]["policies"][:2]}})
    assert policy.resolve(no_catch_all, ["eng"]) is None


def test_allowed_models_follow_available_models() -> None:
    cfg = parsed_config(POLICIES)
    _, contractors = policy.resolve(cfg, ["contractors"])  # type: ignore[misc]
    assert policy.allowed_models(cfg, contractors) == ["claude-haiku-4-5"]
    assert policy.model_allowed(contractors, "claude-haiku-4-5-20251001")
    assert policy.model_allowed(contractors, "Claude-Haiku-4-5")
    assert not policy.model_allowed(contractors, "claude-opus-4-5")
    assert not policy.model_allowed(contractors, "claude-opus-4-5[1m]")
