"""Everything the three functions share; each module owns one concern."""
