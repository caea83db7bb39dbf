"""gateway.capture: the real CLI's request, cached per version, described without its text."""

from __future__ import annotations

import json
from pathlib import Path

from gateway import capture


def test_cache_answers_without_the_cli_and_shape_names_no_text(tmp_path: Path) -> None:
    body = {
        "model": "claude-opus-4-7",
        "max_tokens": 64000,
        "stream": True,
        "thinking": {"type": "adaptive"},
        "tools": [{"name": f"T{i}", "input_schema": {}} for i in range(12)],
        "messages": [{"role": "user", "content": "a secret prompt"}],
    }
    stored = capture.CapturedRequest("9.9.9", "/v1/messages?beta=true", {"anthropic-beta": "b1,b2"}, body, 1234)
    (tmp_path / "9.9.9.json").write_text(json.dumps(stored.to_json()))
    got = capture.captured("9.9.9", tmp_path)  # no such CLI exists: only the cache can answer
    assert got == stored
    shape = capture.shape(got)
    assert shape["tools"] == 12 and shape["max_tokens"] == 64000 and shape["thinking"] == "adaptive"
    assert shape["betas"] == ["b1", "b2"] and shape["bytes"] == 1234
    assert "a secret prompt" not in json.dumps(shape)
