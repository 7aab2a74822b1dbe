"""The committed generated code is what scripts/generate_protos.py produces today.

Regenerating into a temporary directory must give byte-identical files, and the vendored
OpenTelemetry protos must compile to exactly the installed package's descriptors.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from conftest import repo_root


def _script() -> ModuleType:
    path = repo_root() / "scripts" / "generate_protos.py"
    spec = importlib.util.spec_from_file_location("generate_protos", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _files(root: Path) -> dict[str, bytes]:
    package = root / "prodsentinel"
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def test_regenerating_gives_the_committed_files(tmp_path: Path) -> None:
    """Running the generator into an empty directory reproduces every committed file of
    prodsentinel/ byte for byte, and no committed file is missing from the output."""
    result = subprocess.run(
        [
            sys.executable,
            str(repo_root() / "scripts" / "generate_protos.py"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    generated, committed = _files(tmp_path), _files(repo_root())
    assert sorted(generated) == sorted(committed)
    differing = [name for name in generated if generated[name] != committed[name]]
    assert differing == [], f"stale generated code, rerun scripts/generate_protos.py: {differing}"


def test_every_own_proto_is_generated() -> None:
    """Each proto/prodsentinel/v1/*.proto has its _pb2 module committed."""
    script = _script()
    for proto in script.own_protos():
        module = repo_root() / "prodsentinel" / "v1" / f"{proto.stem}_pb2.py"
        assert module.is_file(), f"{proto.name} has no generated module"


def test_vendored_otel_protos_compile_to_the_installed_descriptors() -> None:
    """protoc compiles proto/opentelemetry/... to the very FileDescriptorProtos of the
    installed opentelemetry-proto package, so they are the version our imports use."""
    assert _script().check_vendored() == []
