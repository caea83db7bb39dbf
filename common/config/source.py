"""Where gateway.yaml comes from and when it is re-read: `parse`, `ConfigSource`, `current()`.

`current()` serves this instance's config from $GATEWAY_CONFIG (a file path or
a Secret Manager secret) and re-reads the source when it changes: a file's
mtime and size at most every 5 s, a secret's newest version every
`config_refresh_seconds`. A new version that fails validation is refused and
the last good one stays in force.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec
import yaml

from common.config import references
from common.config.problems import schema_problem, short
from common.config.rules import check
from common.config.schema import Config, ConfigError
from common.core import logs


@dataclass(frozen=True)
class Loaded:
    config: Config
    warnings: list[str]


def parse(
    text: str,
    source: str = "gateway.yaml",
    resolve_secret: Callable[[str], str] = references.secret_access,
) -> Loaded:
    """Parse and validate YAML text; raise ConfigError naming every fault."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): not valid YAML{where}: {getattr(exc, 'problem', exc)}"], source) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"(top level): expected a mapping of keys, got {short(raw)}"], source)
    problems: list[str] = []
    expanded = references.expand(raw, "", problems, resolve_secret)
    if problems:
        raise ConfigError(problems, source)
    try:
        cfg = msgspec.convert(expanded, Config, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError([schema_problem(exc, expanded)], source) from None
    errors, warnings = check(cfg)
    if errors:
        raise ConfigError(errors, source)
    return Loaded(cfg, warnings)


def is_secret_name(location: str) -> bool:
    return bool(re.fullmatch(r"(secret:)?projects/[^/]+/secrets/[^/]+(/versions/[^/]+)?", location))


class ConfigSource:
    """The per-instance cached config of one source (a file or a secret).

    `get()` returns the cached config and, at most every `config_refresh_seconds`
    (5 s for files), checks whether the source changed: a file's mtime and size,
    or a secret's newest version name. A new text that fails validation is
    refused with a logged error and the last good config stays in force.
    """

    def __init__(self, location: str, resolve_secret: Callable[[str], str] = references.secret_access) -> None:
        self.location = location.removeprefix("secret:")
        self.is_secret = is_secret_name(location)
        self._resolve_secret = resolve_secret
        self._lock = threading.Lock()
        self._loaded: Loaded | None = None
        self._stamp: object = None
        self._checked_at = 0.0

    def read(self) -> tuple[str, object]:
        if self.is_secret:
            from common.config import secret_manager as secrets

            name = self.location if "/versions/" in self.location else self.location + "/versions/latest"
            version, text = secrets.access_version(name)
            return text, version
        try:
            stat = os.stat(self.location)
            with open(self.location, encoding="utf-8") as handle:
                return handle.read(), (stat.st_mtime_ns, stat.st_size)
        except OSError as exc:
            raise ConfigError(
                [f"(file): cannot read {self.location} ({exc.strerror}); set GATEWAY_CONFIG to gateway.yaml's path"],
                self.location,
            ) from None

    def _stamp_now(self) -> object:
        if self.is_secret:
            return self.read()[1]
        try:
            stat = os.stat(self.location)
        except OSError:
            return self._stamp  # a vanished file keeps the last good config
        return (stat.st_mtime_ns, stat.st_size)

    def get(self) -> Config:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                if self._loaded is None:
                    text, stamp = self.read()
                    self._loaded = parse(text, self.location, self._resolve_secret)
                    for warning in self._loaded.warnings:
                        logs.warning("config warning", detail=warning)
                    self._stamp = stamp
                    self._checked_at = time.monotonic()
                return self._loaded.config
        interval = loaded.config.config_refresh_seconds if self.is_secret else 5
        if time.monotonic() - self._checked_at >= interval and self._lock.acquire(blocking=False):
            try:
                self._checked_at = time.monotonic()
                self._reload_if_changed()
            finally:
                self._lock.release()
        return self._loaded.config  # type: ignore[union-attr]

    def _reload_if_changed(self) -> None:
        try:
            stamp = self._stamp_now()
            if stamp == self._stamp:
                return
            text, stamp = self.read()
            loaded = parse(text, self.location, self._resolve_secret)
        except ConfigError as exc:
            logs.error("new gateway.yaml refused; the last good config stays in force", problems=exc.problems)
            return
        except Exception as exc:  # the source is unreachable: keep serving
            logs.error("cannot re-read gateway.yaml; the last good config stays in force", error=str(exc))
            return
        self._loaded = loaded
        self._stamp = stamp
        for warning in loaded.warnings:
            logs.warning("config warning", detail=warning)
        logs.info("gateway.yaml reloaded", source=self.location)


_source: ConfigSource | None = None
_source_lock = threading.Lock()


def load(location: str) -> Loaded:
    """Read and validate the config at `location` (a path or a secret) once, without caching it."""
    text, _ = ConfigSource(location).read()
    return parse(text, location)


def config_location() -> str:
    return os.environ.get("GATEWAY_CONFIG", "gateway.yaml")


def current() -> Config:
    """The config of this instance (from $GATEWAY_CONFIG), cached and refreshed."""
    global _source
    source = _source
    if source is None:
        with _source_lock:
            if _source is None:
                _source = ConfigSource(config_location())
            source = _source
    return source.get()


def active_location() -> str:
    """Where `current()` reads from: the location `use()` set, else $GATEWAY_CONFIG."""
    source = _source
    return source.location if source is not None else config_location()


def use(location: str | None) -> None:
    """Point this process at another config source (tests, the local runner)."""
    global _source
    with _source_lock:
        _source = ConfigSource(location) if location else None
