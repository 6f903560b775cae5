"""The zoo's SAGAN block (C=256) on a 16x16 map, exported once per session: batch axis dynamic, and static."""

from __future__ import annotations

from pathlib import Path

import pytest

SHAPE = (1, 256, 16, 16)
INPUT_SHAPE = "x".join(map(str, SHAPE))


@pytest.fixture(scope="session")
def sagan_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``zoo:sagan-256`` exported with ``--dynamic 0`` (what Triton batches)."""
    from attn_deploy import api

    path = tmp_path_factory.mktemp("sagan") / "sagan.onnx"
    api.export("zoo:sagan-256", input_shapes=[SHAPE], dynamic_axes=[0]).save(path)
    return path


@pytest.fixture(scope="session")
def sagan_static_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same block with every axis static."""
    from attn_deploy import api

    path = tmp_path_factory.mktemp("sagan-static") / "static.onnx"
    api.export("zoo:sagan-256", input_shapes=[SHAPE]).save(path)
    return path
