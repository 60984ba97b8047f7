"""The public surface: what `actorstage` exports, and from where."""

from __future__ import annotations

import importlib
from pathlib import Path

import actorstage

EXPECTED = {
    "Actor", "ActorCrashedError", "ActorDeadError", "ActorRef", "ActorStatus", "ActorSystem",
    "ActorstageError", "Backoff", "ChildSpec", "Context", "DeadLetter", "ExitReason",
    "InvalidDefinitionError", "MailboxFullError", "Message", "Restart", "RestartIntensityError",
    "Strategy", "Supervisor", "SupervisorRef", "Terminated", "TreeNode", "UnknownChildError",
    "run", "MessageEncodingError", "ProcessOptions", "TransportError", "child_main",
    "JoinPlacement", "join_main",
}

PUBLIC_MODULES = ["actorstage", "actorstage.actors", "actorstage.supervisors",
                  "actorstage.transport", "actorstage.exceptions", "actorstage.testing",
                  "actorstage.workflows", "actorstage.service", "actorstage.pipelines",
                  "actorstage.serverless", "actorstage.observer",
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


def test_the_wheel_ships_the_protos_the_observer_page_and_names_the_project_urls(
        tmp_path: Path) -> None:
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--quiet", "-w", str(tmp_path), str(root)], check=True, timeout=300)
    [wheel] = tmp_path.glob("actorstage-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(archive.read(name).decode() for name in names
                        if name.endswith(".dist-info/METADATA"))
    for proto in ("runner", "control", "pipeline", "bridge"):
        assert f"actorstage/protos/actorstage_proto/v1/{proto}.proto" in names
    for proto in ("common", "execution", "streaming"):
        assert f"actorstage/protos/remotemedia/v1/{proto}.proto" in names
    assert "Project-URL: Homepage, " in metadata and "Project-URL: Issues, " in metadata
    assert "actorstage/observer/page.html" in names  # the observer's page


def test_the_protos_are_readable_as_package_resources() -> None:
    from actorstage.protos import SERVICES, include_dir, read

    for service, name in SERVICES.items():
        package, _, short = service.rpartition(".")
        text = read(name)
        assert f"package {package};" in text and f"service {short} {{" in text
        assert (include_dir() / name).is_file()
