"""Leaf types and helpers with no I/O and no Flask: what every other package speaks.

`errors` (the client-facing exceptions and their envelopes), `identity` (the
verified caller), `usage` (one metered request and its token counts),
`catalog` (every model Claude Code knows: ids, Vertex ids, families, output
ceilings and list prices, from `catalog.json`), `models` (the one model-id
normaliser, catalogue lookups and Claude Code's reading of model lists), `periods` (UTC day / ISO week / month), `checksum` (Claude Code's
managed-settings checksum), `urls`, and `logs` (structured JSON lines with the
request id). Nothing here imports another package of `common`.
"""

__all__ = [
    "catalog",
    "checksum",
    "errors",
    "identity",
    "logs",
    "models",
    "periods",
    "urls",
    "usage",
]
