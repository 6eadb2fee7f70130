"""Assembling the backend directory the embedded tritonserver runs with."""

from __future__ import annotations

import os
import sys
from importlib import resources

from satwatch.server.backends import assemble_backend_directory, find_distribution


def test_backend_directory_holds_the_python_backend_and_satwatchs_backends(tmp_path):
    distribution = find_distribution()
    target = assemble_backend_directory(tmp_path / "backends", distribution)

    library = target / "python" / "libtriton_python.so"
    # Triton refuses a library whose real path leaves the backend directory: a copy.
    assert library.is_file() and not library.is_symlink()
    assert library.read_bytes() == (distribution.python_backend / library.name).read_bytes()

    stub = target / "python" / "triton_python_backend_stub"
    major, minor = sys.version_info[:2]
    assert stub.resolve().parent.name == f"{major}.{minor}"
    assert os.access(stub, os.X_OK)
    assert (target / "python" / "triton_python_backend_utils.py").resolve().is_file()

    packaged = resources.files("satwatch.server") / "backends"
    for name in ("onnxruntime", "pytorch"):
        assert (target / name / "model.py").read_bytes() == (
            packaged / name / "model.py"
        ).read_bytes()


def test_assembling_twice_leaves_the_same_directory(tmp_path):
    first = assemble_backend_directory(tmp_path / "b")
    before = sorted(p.relative_to(first) for p in first.rglob("*"))
    second = assemble_backend_directory(tmp_path / "b")
    assert second == first
    assert sorted(p.relative_to(first) for p in first.rglob("*")) == before


def test_a_changed_backend_file_is_refreshed(tmp_path):
    target = assemble_backend_directory(tmp_path / "b")
    (target / "onnxruntime" / "model.py").write_text("stale")
    assemble_backend_directory(target)
    assert (target / "onnxruntime" / "model.py").read_text() != "stale"
