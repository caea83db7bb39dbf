"""Operator and developer tooling: `python -m gateway <command>` (not deployed)."""
