"""The checked-in generated protobuf code matches gossamer/contract/*.proto."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import REPO


def test_generated_code_is_current(tmp_path):
    (tmp_path / "gossamer" / "contract").mkdir(parents=True)
    for proto in (REPO / "gossamer" / "contract").glob("*.proto"):
        shutil.copy(proto, tmp_path / "gossamer" / "contract" / proto.name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            "--python_out=.",
            "--pyi_out=.",
            *[
                f"gossamer/contract/{p.name}"
                for p in (REPO / "gossamer" / "contract").glob("*.proto")
            ],
        ],
        cwd=tmp_path,
        check=True,
    )
    generated = sorted((tmp_path / "gossamer" / "contract").glob("*_pb2.py*"))
    assert generated
    for path in generated:
        checked_in = REPO / "gossamer" / "contract" / path.name
        assert checked_in.read_text() == path.read_text(), f"{path.name} is stale: run ./dev protos"


def test_messages_round_trip():
    from gossamer.contract import mesh_pb2

    req = mesh_pb2.RegisterRequest(
        instance=mesh_pb2.Instance(instance_id="a", port=15006, labels={"k": "v"})
    )
    again = mesh_pb2.RegisterRequest.FromString(req.SerializeToString())
    assert again.WhichOneof("kind") == "instance" and again.instance.labels["k"] == "v"
