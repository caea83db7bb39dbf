"""Loaded at interpreter start by the gateway `bench --attribute` starts apart (PYTHONPATH): the probe."""

from bench import probe

probe.install()
