"""Regenerates grpc_predict_v2_pb2.py and grpc_predict_v2_pb2_grpc.py from the .proto beside them.

`python -m seismo.serving.proto.generate` (needs grpcio-tools, a dev dependency). The generated files are
committed so the model server needs only grpcio and protobuf at run time.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO = "grpc_predict_v2.proto"


def generate(out_dir: Path) -> list[Path]:
    # In a child process: grpc_tools' compiler and an already loaded protobuf runtime crash when they share one.
    command = [sys.executable, "-m", "grpc_tools.protoc", f"-I{HERE}", f"--python_out={out_dir}", f"--pyi_out={out_dir}",
               f"--grpc_python_out={out_dir}", str(HERE / PROTO)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"protoc failed with exit code {result.returncode}: {result.stderr.strip()}")
    written = [out_dir / "grpc_predict_v2_pb2.py", out_dir / "grpc_predict_v2_pb2.pyi", out_dir / "grpc_predict_v2_pb2_grpc.py"]
    # protoc writes an absolute import of the sibling module; inside the package it must be relative.
    grpc_module = written[2]
    grpc_module.write_text(grpc_module.read_text().replace("import grpc_predict_v2_pb2 as", "from . import grpc_predict_v2_pb2 as"))
    return written


_STAMPS = (
    (re.compile(r"^GRPC_GENERATED_VERSION = '[^']*'$", re.M), "GRPC_GENERATED_VERSION = '<version>'"),
    (re.compile(r"^# Protobuf Python Version: .*$", re.M), "# Protobuf Python Version: <version>"),
    (re.compile(r"(ValidateProtobufRuntimeVersion\(\s*_runtime_version\.Domain\.PUBLIC,)\s*\d+,\s*\d+,\s*\d+,"), r"\1 <version>,"),
)


def without_version_stamps(text: str) -> str:
    """The generated code with the generators' own version numbers blanked: a newer grpcio-tools or
    protoc that writes the same code under another stamp is not a change (the stamps are minimums the
    runtime checks, and pyproject.toml's grpcio/protobuf floors keep them)."""
    for pattern, replacement in _STAMPS:
        text = pattern.sub(replacement, text)
    return text


if __name__ == "__main__":
    for path in generate(HERE):
        print(f"wrote {path}", file=sys.stderr)
