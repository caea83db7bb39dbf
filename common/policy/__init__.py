"""Per-group policy from gateway.yaml: which policy applies, which models and tools it allows, and the managed settings served to Claude Code.

`rules` holds the decisions (no HTTP): resolution (first match wins, the
catch-all last), models as Claude Code reads `availableModels`, tool allow/deny;
`managed` serves `/managed/settings` with Claude Code's own checksum as ETag.
"""

__all__ = [
    "managed",
    "rules",
]
