"""``Pipeline``: a checked manifest, ready to run as many sessions as wanted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from actorstage.actors._system import ActorSystem
from actorstage.pipelines._config import RuntimeConfig, load_runtime_config
from actorstage.pipelines._manifest import Manifest, load_manifest
from actorstage.pipelines._plan import Plan, check_manifest
from actorstage.pipelines._registry import import_node_modules
from actorstage.pipelines._session import Output, PipelineResult, PipelineSession

__all__ = ["Pipeline"]

log = logging.getLogger("actorstage.pipelines")


class Pipeline:
    """A manifest checked against the registered node types and the settings.

    Args:
        manifest: A ``Manifest``, or the path of a ``.json``/``.yaml`` file.
        runtime: Service-wide defaults: a ``RuntimeConfig`` or the path of a
            ``runtime.toml``. Its ``import_paths`` and ``imports`` are loaded
            first, so the node types they register are known.

    Raises ``ManifestError`` listing every problem; nothing starts then.
    """

    def __init__(self, manifest: Manifest | str | Path,
                 *, runtime: RuntimeConfig | str | Path | None = None) -> None:
        if isinstance(runtime, str | Path):
            runtime = load_runtime_config(runtime)
        if runtime is not None:
            import_node_modules(runtime.imports, runtime.import_paths)
        if not isinstance(manifest, Manifest):
            manifest = load_manifest(manifest)
        self.runtime = runtime
        self.plan: Plan = check_manifest(manifest, runtime)
        if manifest.unused:  # reported, never silently ignored
            log.warning("pipeline %r: %d manifest keys are not used by actorstage (kept): %s",
                        manifest.metadata.name, len(manifest.unused),
                        ", ".join(manifest.unused))

    @property
    def name(self) -> str:
        return self.plan.name

    @property
    def manifest(self) -> Manifest:
        return self.plan.manifest

    def session(self, system: ActorSystem, *, session_id: str | None = None,
                origins: bool = False) -> PipelineSession:
        """A new session in ``system``; start it with ``async with``. ``origins``: each
        output carries the origin its input was sent with (``send(item, origin=...)``)."""
        return PipelineSession(self.plan, system, session_id, origins=origins)

    async def run(self, inputs: Iterable[Any], *, system: ActorSystem | None = None,
                  session_id: str | None = None) -> PipelineResult:
        """Run one session over ``inputs`` to its end; returns outputs and per-node figures.

        Without ``system``, a system of its own is started and stopped.
        Raises ``PipelineError`` when the session fails.
        """
        if system is None:
            async with ActorSystem(f"pipeline-{self.name}") as own:
                return await self.run(inputs, system=own, session_id=session_id)
        async with self.session(system, session_id=session_id) as session:
            outputs: list[Output] = []

            feeder = asyncio.get_running_loop().create_task(session.feed(inputs))
            try:
                async for output in session.outputs():
                    outputs.append(output)
            finally:
                feeder.cancel()
                await asyncio.wait([feeder])
            return await session.result(outputs)
