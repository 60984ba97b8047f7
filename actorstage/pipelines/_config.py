"""Pipeline settings: the manifest first, then ``runtime.toml``, then the built-in defaults.

No ``from __future__ import annotations`` here: ``RuntimeConfig`` is
re-exported from ``actorstage.pipelines`` and decoded by msgspec.
"""

import logging
import os
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from actorstage.pipelines._manifest import (
    ManifestError,
    MultiprocessSettings,
    Placement,
    Problem,
)

__all__ = ["DEFAULTS", "RuntimeConfig", "Settings", "load_runtime_config", "resolve_settings"]

MiB = 1024 * 1024
_RUNTIME = "runtime config"
log = logging.getLogger("actorstage.pipelines")

DEFAULTS: dict[str, Any] = {
    "max_processes_per_session": 16,
    "channel_capacity": 64,
    "init_timeout_secs": 30.0,
    "enable_backpressure": True,
    "cleanup_grace_period_secs": 5.0,
    "memory_limit_bytes": 512 * MiB,
    "shared_memory_threshold_bytes": 64 * 1024,
    "on_node_crash": "fail",
    "max_node_restarts": 3,
}

# (lowest, highest) allowed, both inclusive; None means unbounded.
_RANGES: dict[str, tuple[float, float | None]] = {
    "max_processes_per_session": (1, 256),
    "channel_capacity": (1, 1_000_000),
    "init_timeout_secs": (0.001, 3600),
    "cleanup_grace_period_secs": (0.001, 600),
    "memory_limit_bytes": (MiB, None),
    "shared_memory_threshold_bytes": (1024, None),
    "max_node_restarts": (0, 1000),
}


# Keys of RemoteMedia's runtime.toml that mean nothing here (its Docker fallback and its
# managed Python environments): accepted, with a warning, so that its files load.
_REMOTEMEDIA_ONLY = ("docker_fallback_policy", "python_env")


class RuntimeConfig(MultiprocessSettings, frozen=True, kw_only=True,
                    forbid_unknown_fields=True):
    """Service-wide pipeline defaults, from a ``runtime.toml`` file.

    It takes the keys of a manifest's ``metadata.multiprocess``, and:

    Attributes:
        venv: A virtual environment whose ``bin/python`` runs process nodes
            (when no ``python_executable`` is set here or in the manifest).
        import_paths: Folders added to ``sys.path`` before node modules are
            imported, here and in every node process.
        imports: Modules to import: they register node types.
        placements: Named places for process nodes (``[placements.gpu.ray]``: a Ray
            cluster's address, resources, runtime environment), which a manifest's node
            names as its ``placement``.
    """

    venv: str | None = None
    import_paths: list[str] = msgspec.field(default_factory=list)
    imports: list[str] = msgspec.field(default_factory=list)
    placements: dict[str, Placement] = msgspec.field(default_factory=dict)


def load_runtime_config(path: str | Path, warnings: list[str] | None = None
                        ) -> RuntimeConfig:
    """A ``RuntimeConfig`` from a TOML file; relative paths in it are taken from its folder.

    What it accepts but does not use is logged as a warning, or added to ``warnings``."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ManifestError([Problem("", f"cannot read the file: {exc}")], str(path),
                            _RUNTIME) from None
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError([Problem("", f"not valid TOML: {exc}")], str(path), _RUNTIME) from None
    if isinstance(raw.get("python_path"), list):  # RemoteMedia's name for import_paths
        raw["import_paths"] = [*raw.get("import_paths", []), *raw.pop("python_path")]
    unused = sorted(key for key in _REMOTEMEDIA_ONLY if raw.pop(key, None) is not None)
    if unused:
        warning = (f"{path}: {', '.join(unused)} {'is' if len(unused) == 1 else 'are'} "
                   "RemoteMedia's and not used here")
        if warnings is None:
            log.warning("%s", warning)
        else:
            warnings.append(warning)
    try:
        config = msgspec.convert(raw, RuntimeConfig)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$.")
        raise ManifestError([Problem(where.rstrip("`"), message)], str(path), _RUNTIME) from None
    base = path.resolve().parent

    def here(text: str) -> str:
        return str(base / Path(text).expanduser())

    return msgspec.structs.replace(
        config,
        venv=here(config.venv) if config.venv else None,
        python_executable=(here(config.python_executable)
                           if config.python_executable and os.sep in config.python_executable
                           else config.python_executable),
        import_paths=[here(text) for text in config.import_paths],
    )


@dataclass(frozen=True)
class Settings:
    """The settings a session runs with, and where each came from.

    ``sources`` maps each key to ``"manifest"``, ``"runtime.toml"`` or ``"default"``.
    """

    max_processes_per_session: int
    channel_capacity: int
    init_timeout_secs: float
    python_executable: str
    enable_backpressure: bool
    cleanup_grace_period_secs: float
    memory_limit_bytes: int
    shared_memory_threshold_bytes: int
    on_node_crash: str
    max_node_restarts: int
    import_paths: tuple[str, ...] = ()
    imports: tuple[str, ...] = ()
    sources: dict[str, str] = field(default_factory=dict)


def resolve_settings(
    manifest: MultiprocessSettings | None, runtime: RuntimeConfig | None,
    problems: list[Problem] | None = None,
) -> Settings:
    """Each key from the manifest, else ``runtime.toml``, else the default.

    Out-of-range values are added to ``problems`` (with their location) when
    a list is given, else raised as ``ManifestError``.
    """
    found: list[Problem] = []
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, default in DEFAULTS.items():
        chosen = getattr(manifest, key, None) if manifest is not None else None
        source, where = "manifest", f"metadata.multiprocess.{key}"
        if chosen is None and runtime is not None:
            chosen = getattr(runtime, key)
            source, where = "runtime.toml", f"runtime.toml: {key}"
        if chosen is None:
            chosen, source = default, "default"
        bounds = _RANGES.get(key)
        if bounds is not None and isinstance(chosen, int | float):
            low, high = bounds
            if chosen < low or (high is not None and chosen > high):
                span = f"between {low:g} and {high:g}" if high is not None else f">= {low:g}"
                found.append(Problem(where, f"must be {span}, got {chosen!r}"))
        values[key] = chosen
        sources[key] = source
    python = manifest.python_executable if manifest is not None else None
    sources["python_executable"] = "manifest"
    if python is None and runtime is not None:
        sources["python_executable"] = "runtime.toml"
        python = runtime.python_executable
        if python is None and runtime.venv is not None:
            python = str(Path(runtime.venv) / "bin" / "python")
    if python is None:
        python, sources["python_executable"] = sys.executable, "default"
    settings = Settings(
        python_executable=python,
        import_paths=tuple(runtime.import_paths) if runtime is not None else (),
        imports=tuple(runtime.imports) if runtime is not None else (),
        sources=sources,
        **values,
    )
    if problems is not None:
        problems.extend(found)
    elif found:
        raise ManifestError(found)
    return settings
