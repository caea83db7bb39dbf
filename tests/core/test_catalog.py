"""The model catalogue: what the committed data file holds, and that the refresh script reproduces it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from common.core import catalog
from gateway import catalog as refresh

ROOT = Path(__file__).resolve().parents[2]
# CI and developers' machines have the shared folder beside the checkout (absent elsewhere).
SHARED = Path(os.environ.get("GATEWAY_SHARED_DIR", ROOT.parent / "shared"))
SOURCE = SHARED / f"claude-code-model-catalog-{catalog.CLAUDE_CODE_VERSION}.json"


def test_the_catalogue_as_loaded() -> None:
    assert len(catalog.MODELS) == 24
    assert set(catalog.FAMILIES) == {"opus", "sonnet", "haiku", "fable", "mythos"}
    assert len(catalog.BY_ID) == len(catalog.MODELS)  # ids are unique
    assert catalog.ALIASES["opus"] == "claude-opus-4-7"  # what the CLI sends by default in gateway mode
    assert all(target in catalog.BY_ID for target in catalog.ALIASES.values())
    assert [m.id for m in catalog.MODELS if m.vertex_id is None] == [
        "claude-mythos-5",
        "claude-mythos-5-1",
        "claude-mythos-5-2",
    ]
    assert catalog.BY_ID["claude-3-5-sonnet"].vertex_id == "claude-3-5-sonnet-v2@20241022"
    assert catalog.BY_ID["claude-opus-4-7"].max_output_tokens == 128_000
    haiku = catalog.BY_ID["claude-haiku-5-5"].tier
    assert haiku.above_prompt_tokens == 100_000 and haiku.long_prompt is not None
    assert haiku.long_prompt.input == 500_000 and haiku.rates.input == 100_000
    assert [m.id for m in catalog.MODELS if m.tier.long_prompt is not None] == ["claude-haiku-5-5"]


def test_prices_in_the_data_file_are_decimal_strings() -> None:
    data = json.loads(catalog.DATA_FILE.read_text())
    for name, tier in data["pricing_tiers"].items():
        for key in refresh.PRICE_KEYS:
            assert isinstance(tier[key], str), (name, key)


def test_loading_it_imports_nothing_but_the_standard_library() -> None:
    code = (
        "import sys; before = set(sys.modules); import common.core.catalog; "
        "print(sorted(m for m in set(sys.modules) - before if not m.startswith(('common', '_'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    loaded = set(json.loads(done.stdout.replace("'", '"')))
    assert loaded.isdisjoint({"msgspec", "flask", "yaml", "requests", "urllib3", "google"}), loaded


def _source() -> dict[str, Any]:
    if not SOURCE.is_file():
        pytest.skip(f"{SOURCE} is not on this machine (the committed data file is tested on its own)")
    data: dict[str, Any] = json.loads(SOURCE.read_text())
    return data


def test_the_committed_file_is_what_the_refresh_script_makes_of_claude_codes_catalogue() -> None:
    source = _source()
    assert catalog.DATA_FILE.read_text() == refresh.render(refresh.transform(source, catalog.CLAUDE_CODE_VERSION))
    assert refresh.refresh(SOURCE, check=True) == 0


def test_refresh_writes_the_file_and_refuses_what_the_gateway_cannot_use(tmp_path: Path) -> None:
    source = _source()
    target = tmp_path / "catalog.json"
    copy = tmp_path / "claude-code-model-catalog-9.9.9.json"
    copy.write_text(json.dumps(source))
    assert refresh.refresh(copy, target=target) == 0
    assert json.loads(target.read_text())["claude_code_version"] == "9.9.9"
    assert refresh.refresh(copy, target=target, check=True) == 0

    broken = json.loads(json.dumps(source))
    del broken["pricing_tiers"]["tier_5_25"]["cache_write_1h"]
    with pytest.raises(refresh.CatalogError, match=r"pricing_tiers\.tier_5_25\.cache_write_1h: missing"):
        refresh.transform(broken, "9.9.9")
    broken = json.loads(json.dumps(source))
    broken["models"][0]["pricing"] = "tier_nope"
    with pytest.raises(refresh.CatalogError, match=r"models\[0\]\.pricing"):
        refresh.transform(broken, "9.9.9")
    clash = json.loads(json.dumps(source))
    clash["models"][1]["provider_ids"]["vertex"] = clash["models"][0]["provider_ids"]["vertex"]
    assert refresh.spelling_clashes(refresh.transform(clash, "9.9.9"))
    copy.write_text(json.dumps(clash))
    before = target.read_text()
    assert refresh.refresh(copy, target=target) == 1 and target.read_text() == before  # nothing written
