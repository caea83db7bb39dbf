"""The model catalogue at the proxy: Vertex ids without config, explicit config winning, a clear 400 for
a model Vertex does not serve, and `/v1/models` listing the catalogue for what the policy allows."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from support import base_config, live_gateway, token_for, write_config

from common.core import catalog
from gateway.standins import upstream as standin_module

POLICIES = [
    {"name": "haiku-only", "match": {"groups": ["contractors"]}, "settings": {"availableModels": ["haiku"]}},
    {"name": "everyone", "settings": {"availableModels": ["opus", "sonnet", "haiku", "fable", "mythos"]}},
]


@pytest.fixture(scope="module")
def standin() -> Iterator[Any]:
    handle = standin_module.start()
    yield handle
    handle.stop()


def _config(tmp_path: Path, database_url: str, standin: Any, **extra: Any) -> Path:
    data = base_config(database_url, upstream_url=standin.base_url)
    data["models"] = []  # the catalogue alone
    data["managed"] = {"policies": POLICIES}
    data.update(extra)
    return write_config(tmp_path, data)


def _post(url: str, path: Path, model: str, groups: tuple[str, ...] = ()) -> requests.Response:
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {token_for(path, groups=groups)}", "content-type": "application/json"}
    return requests.post(url + "/v1/messages", data=json.dumps(body), headers=headers, timeout=30)


def test_vertex_gets_the_catalogue_id_for_any_spelling(tmp_path: Path, database_url: str, standin: Any) -> None:
    standin.reset()
    path = _config(tmp_path, database_url, standin)
    sent = {
        "claude-haiku-4-5-20251001": "claude-haiku-4-5@20251001",  # what the CLI's start-up call sends
        "claude-haiku-4-5": "claude-haiku-4-5@20251001",
        "claude-3-5-sonnet-20241022": "claude-3-5-sonnet-v2@20241022",
        "claude-sonnet-4-20250514": "claude-sonnet-4@20250514",
        "claude-opus-4-7[1m]": "claude-opus-4-7",
        "claude-fable-5-2": "claude-fable-5-2",
    }
    with live_gateway(path) as live:
        for model in sent:
            response = _post(live.url, path, model)
            assert response.status_code == 200, (model, response.text)
    got = [r.path.rsplit("/", 1)[-1] for r in standin.requests]
    assert got == [f"{vertex}:rawPredict" for vertex in sent.values()]


def test_explicit_upstream_model_wins_over_the_catalogue(tmp_path: Path, database_url: str, standin: Any) -> None:
    standin.reset()
    path = _config(
        tmp_path,
        database_url,
        standin,
        models=[{"id": "claude-opus-4-7", "upstream_model": {"vertex": "claude-opus-4-7@20990101"}}],
    )
    with live_gateway(path) as live:
        assert _post(live.url, path, "claude-opus-4-7").status_code == 200
    assert standin.requests[0].path.endswith("/claude-opus-4-7@20990101:rawPredict")


def test_a_model_vertex_does_not_serve_is_a_clear_400_or_goes_to_the_next_upstream(
    tmp_path: Path, database_url: str, standin: Any
) -> None:
    standin.reset()
    path = _config(tmp_path, database_url, standin)
    with live_gateway(path) as live:
        refused = _post(live.url, path, "claude-mythos-5-2")
        listed = requests.get(
            live.url + "/v1/models", headers={"Authorization": f"Bearer {token_for(path)}"}, timeout=10
        ).json()
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "claude-mythos-5-2" in error["message"] and "not available on Vertex AI" in error["message"]
    assert "Anthropic upstream" in error["message"] and "models[].upstream_model" in error["message"]
    assert not standin.requests
    assert not [m for m in listed["data"] if "mythos" in m["id"]]  # not offered where it cannot be served

    standin.reset()
    standin.configure(api_key="sk-ant-standin-key")
    data = json.loads(json.dumps(base_config(database_url, upstream_url=standin.base_url)))
    data["models"] = []
    data["managed"] = {"policies": POLICIES}
    data["upstreams"].append(
        {
            "name": "anthropic",
            "provider": "anthropic",
            "base_url": standin.origin,
            "auth": {"api_key": "sk-ant-standin-key"},
        }
    )
    both = write_config(tmp_path, data, name="both.yaml")
    with live_gateway(both) as live:
        assert _post(live.url, both, "claude-mythos-5-2").status_code == 200
        assert _post(live.url, both, "claude-opus-4-7").status_code == 200
    mythos, opus = standin.requests
    assert mythos.path == "/v1/messages" and mythos.json["model"] == "claude-mythos-5-2"
    assert opus.path.endswith("/claude-opus-4-7:rawPredict")  # Vertex is first and serves it


def test_models_list_is_the_catalogue_the_policy_allows(tmp_path: Path, database_url: str, standin: Any) -> None:
    path = _config(tmp_path, database_url, standin)
    with live_gateway(path) as live:

        def listing(groups: tuple[str, ...]) -> list[tuple[str, str]]:
            headers = {"Authorization": f"Bearer {token_for(path, groups=groups)}"}
            data = requests.get(live.url + "/v1/models", headers=headers, timeout=10).json()["data"]
            return [(m["id"], m["display_name"]) for m in data]

        haiku = listing(("contractors",))
        everyone = listing(())
        one = requests.get(
            live.url + "/v1/models/claude-haiku-4-5-20251001",
            headers={"Authorization": f"Bearer {token_for(path, groups=('contractors',))}"},
            timeout=10,
        )
    assert haiku == [
        ("claude-haiku-5-5", "Haiku 5.5"),
        ("claude-haiku-4-5", "Haiku 4.5"),
        ("claude-3-5-haiku", "Haiku 3.5"),
    ]
    served = [m for m in reversed(catalog.MODELS) if m.vertex_id is not None]
    assert everyone == [(m.id, m.display_name) for m in served]
    assert one.status_code == 200 and one.json()["id"] == "claude-haiku-4-5"
