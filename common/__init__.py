"""Everything the three functions share, as packages by concern (see docs/architecture.md).

Layers, lowest first (enforced by import-linter contracts in pyproject.toml):
`core` < `config` < `db` < `http`, `audit` < `auth` < `policy`, `spend`,
`telemetry` < `proxy`, `admin`. `paths` (the path table) is a leaf.
"""
