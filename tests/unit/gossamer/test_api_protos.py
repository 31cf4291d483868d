"""The checked-in generated protobuf code matches gossamer/api/*.proto."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_generated_code_is_current(tmp_path):
    (tmp_path / "gossamer" / "api").mkdir(parents=True)
    for proto in (REPO / "gossamer" / "api").glob("*.proto"):
        shutil.copy(proto, tmp_path / "gossamer" / "api" / proto.name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            "--python_out=.",
            "--pyi_out=.",
            *[f"gossamer/api/{p.name}" for p in (REPO / "gossamer" / "api").glob("*.proto")],
        ],
        cwd=tmp_path,
        check=True,
    )
    generated = sorted((tmp_path / "gossamer" / "api").glob("*_pb2.py*"))
    assert generated
    for path in generated:
        checked_in = REPO / "gossamer" / "api" / path.name
        assert checked_in.read_text() == path.read_text(), f"{path.name} is stale: run ./dev protos"


def test_messages_round_trip():
    from gossamer.api import mesh_pb2

    req = mesh_pb2.RegisterRequest(
        instance=mesh_pb2.Instance(instance_id="a", port=15006, labels={"k": "v"})
    )
    again = mesh_pb2.RegisterRequest.FromString(req.SerializeToString())
    assert again.WhichOneof("kind") == "instance" and again.instance.labels["k"] == "v"
