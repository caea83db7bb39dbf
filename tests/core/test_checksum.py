"""The managed-settings checksum equals what Claude Code computes.

Claude Code's own function (read from its 2.1.x bundle) is run by a real Node
process for the property tests, so JavaScript itself is the reference: key
order by UTF-16 code units, integer-like keys first, number formatting, raw
non-ASCII, escaped lone surrogates.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.core import checksum

# Claude Code 2.1.x, de-minified: rF() sorts keys recursively, Tz() hashes JSON.stringify of it.
CLAUDE_CODE_CHECKSUM_JS = r"""
const { createHash } = require("crypto");
const readline = require("readline");
function sortKeys(e) {
  if (Array.isArray(e)) return e.map(sortKeys);
  if (e !== null && typeof e === "object") { let o = {}; for (let r of Object.keys(e).sort()) o[r] = sortKeys(e[r]); return o; }
  return e;
}
function checksum(e) { return `sha256:${createHash("sha256").update(JSON.stringify(sortKeys(e))).digest("hex")}`; }
const rl = readline.createInterface({ input: process.stdin });
rl.on("line", (line) => { process.stdout.write(checksum(JSON.parse(line)) + "\n"); });
"""

EMPTY = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


class NodeChecksum:
    def __init__(self) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.skip("node is not installed")
        self.proc = subprocess.Popen(
            [node, "-e", CLAUDE_CODE_CHECKSUM_JS],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def __call__(self, value: Any) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        # ASCII transport: every character (lone surrogates included) survives as an escape.
        self.proc.stdin.write(json.dumps(value, ensure_ascii=True) + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()


@pytest.fixture(scope="module")
def js() -> Iterator[NodeChecksum]:
    node = NodeChecksum()
    yield node
    node.close()


keys = st.one_of(
    st.text(max_size=6),
    st.integers(min_value=0, max_value=5000).map(str),
    st.sampled_from(["01", "4294967294", "4294967295", "-1", "1.5", "\ue000", "\U0001f600", "Z", "a", "é"]),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)),
    max_leaves=25,
)


def test_empty_settings_checksum_is_the_one_claude_code_ships() -> None:
    # The constant appears in Claude Code's bundle as the checksum of `{}`.
    assert checksum.checksum({}) == EMPTY
    assert checksum.dumps({}) == "{}"


def test_known_document() -> None:
    settings = {
        "permissions": {"deny": ["WebFetch", "Bash"]},
        "availableModels": ["haiku"],
        "env": {"B": "2", "A": "1"},
    }
    text = '{"availableModels":["haiku"],"env":{"A":"1","B":"2"},"permissions":{"deny":["WebFetch","Bash"]}}'
    assert checksum.dumps(settings) == text
    assert checksum.checksum(settings) == "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_non_ascii_is_raw_utf8_and_controls_escaped() -> None:
    assert checksum.dumps({"k": 'é😀\n\x01"\\\u007f'}) == '{"k":"é😀\\n\\u0001\\"\\\\\u007f"}'


def test_javascript_key_order() -> None:
    # Integer-like keys enumerate first, numerically; the rest by UTF-16 code units.
    assert checksum.js_key_order(["b", "10", "9", "a", "01", "\U0001f600", "\ue000"]) == [
        "9",
        "10",
        "01",
        "a",
        "b",
        "\U0001f600",
        "\ue000",
    ]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (1.0, "1"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (1e16, "10000000000000000"),
        (-0.0, "0"),
        (2**64, "18446744073709552000"),
    ],
)
def test_javascript_numbers(number: float, text: str) -> None:
    assert checksum.js_number(number) == text


@given(values)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_checksum_matches_claude_codes_javascript(js: NodeChecksum, value: Any) -> None:
    assert checksum.checksum(value) == js(value)


@given(st.dictionaries(keys, values, max_size=6))
@settings(max_examples=200, deadline=None)
def test_canonical_text_is_sorted_at_every_level_without_whitespace(value: dict[str, Any]) -> None:
    text = checksum.dumps(value)
    # The same document; numbers compare as the doubles JavaScript holds.
    assert json.loads(text, parse_int=float) == json.loads(json.dumps(value), parse_int=float)

    def check(node: Any) -> None:
        if isinstance(node, dict):
            names = list(node)
            assert names == checksum.js_key_order(names)
            for child in node.values():
                check(child)
        elif isinstance(node, list):
            for child in node:
                check(child)

    check(json.loads(text))
    outside_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', text)
    assert not re.search(r"\s", outside_strings)


def test_lone_surrogates_are_escaped_like_javascript(js: NodeChecksum) -> None:
    value = {"a": "x\ud800y", "\udfff": 1}
    assert '"x\\ud800y"' in checksum.dumps(value)
    assert checksum.checksum(value) == js(value)


def test_plain_turns_yaml_types_into_json_and_refuses_the_rest() -> None:
    assert checksum.plain({"d": dt.date(2026, 1, 2)}) == {"d": "2026-01-02"}
    with pytest.raises(checksum.NotJson, match=r"settings\.x"):
        checksum.plain({"x": float("nan")})
    with pytest.raises(checksum.NotJson, match="quote it"):
        checksum.plain({1: "a"})
    with pytest.raises(checksum.NotJson):
        checksum.plain({"__proto__": {}})
