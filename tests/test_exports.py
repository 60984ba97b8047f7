"""The public surface: what `actorstage` exports, and from where."""

from __future__ import annotations

import importlib

import actorstage

EXPECTED = {
    "Actor", "ActorCrashedError", "ActorDeadError", "ActorRef", "ActorStatus", "ActorSystem",
    "ActorstageError", "Backoff", "ChildSpec", "Context", "DeadLetter", "ExitReason",
    "InvalidDefinitionError", "MailboxFullError", "Message", "Restart", "RestartIntensityError",
    "Strategy", "Supervisor", "SupervisorRef", "Terminated", "TreeNode", "UnknownChildError",
    "run", "MessageEncodingError", "ProcessOptions", "TransportError", "child_main",
}

PUBLIC_MODULES = ["actorstage", "actorstage.actors", "actorstage.supervisors",
                  "actorstage.transport", "actorstage.exceptions", "actorstage.testing",
                  "actorstage.workflows", "actorstage.service", "actorstage.pipelines",
                  "actorstage.web"]

# The protobuf messages and stubs that actorstage.service re-exports stay in their generated
# module: betterproto2 resolves their field types there.
GENERATED = "actorstage._proto.actorstage.v1"


def test_top_level_all_is_pinned() -> None:
    assert set(actorstage.__all__) == EXPECTED
    for name in actorstage.__all__:
        assert hasattr(actorstage, name)


def test_every_public_object_lives_at_a_public_path() -> None:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            home = getattr(obj, "__module__", None)
            if home is None:
                continue
            if home == GENERATED and module_name == "actorstage.service":
                assert getattr(importlib.import_module(home), name) is obj
                continue
            assert not any(part.startswith("_") for part in home.split(".")), (
                f"{module_name}.{name} claims to live in private module {home}")
            assert getattr(importlib.import_module(home), name) is obj


def test_every_exception_derives_from_the_base_and_is_exported() -> None:
    from actorstage import exceptions

    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        assert issubclass(error, actorstage.ActorstageError)
        assert getattr(actorstage, name) is error


def test_the_package_metadata_names_its_project_urls() -> None:
    import tomllib
    from pathlib import Path

    declared = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml")
                             .read_text())["project"]["urls"]
    assert {"Homepage", "Documentation", "Source", "Issues"} <= set(declared)
    from importlib.metadata import metadata

    installed = metadata("actorstage").get_all("Project-URL") or []
    assert {entry.split(",", 1)[0] for entry in installed} >= {"Homepage", "Source", "Issues"}
