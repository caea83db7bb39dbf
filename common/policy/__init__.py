"""Per-group policy from gateway.yaml: which policy applies, the models and tools it allows, the managed settings served.

Decisions, no HTTP: `resolution` picks the caller's policy (first match wins,
the catch-all last; `for_inference` refuses a caller no policy covers),
`models` reads `availableModels` exactly as Claude Code does, `tools` enforces
tool allow/deny on a request body, `explanation` says why a user gets what they
get. `managed` serves `/managed/settings` (Claude Code's checksum as ETag; it
is imported on its own, being an endpoint); `hints` keeps the checksums served
recently, which `managed.settings_check` judges the model requests' header by. Callers use the names below,
`from common import policy` then `policy.resolve(...)`, whatever module holds them.
"""

from common.policy.explanation import explain
from common.policy.models import allowed_models, available_entries, check_model, model_allowed
from common.policy.resolution import for_inference, policy_name, resolve
from common.policy.tools import apply_tools, denied_history_tool, has_tool_rules, tool_allowed

__all__ = [
    "allowed_models",
    "apply_tools",
    "available_entries",
    "check_model",
    "denied_history_tool",
    "explain",
    "explanation",
    "for_inference",
    "has_tool_rules",
    "hints",
    "managed",
    "model_allowed",
    "models",
    "policy_name",
    "resolution",
    "resolve",
    "tool_allowed",
    "tools",
]
