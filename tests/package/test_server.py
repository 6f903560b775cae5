"""A repository ``package --triton --python-backend`` wrote, served by the real tritonserver from
nvidia-pytriton on localhost: outputs against PyTorch within the fp32 preset, concurrent batch-1
requests batched and answered correctly, ``check --backends triton``, and the ensemble that takes
uint8 images of any size through the manifest's preprocessing into the model."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.package.conftest import IMAGE_SHAPE, INPUT_SHAPE, SHAPE, preprocess_reference

http = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed (the serve extra)")

MODEL = "sagan-python"
ENSEMBLE = "net-ensemble-python"


@pytest.fixture(scope="module")
def server(sagan_onnx, image_model, tmp_path_factory) -> Iterator[str]:
    """The server's URL, serving the python-backend SAGAN model and the image model's python-backend
    ensemble (preprocessing in front); skipped only where tritonserver cannot start."""
    from attn_deploy import api
    from attn_deploy.errors import AttnDeployError
    from attn_deploy.package import PackageOptions
    from attn_deploy.package.server import serve, server_files

    try:
        server_files()
    except AttnDeployError as e:
        pytest.skip(f"tritonserver is not available: {e}")
    repo = tmp_path_factory.mktemp("triton") / "repo"
    api.package([sagan_onnx, image_model[0]], repo, PackageOptions(python_backend=True))
    scratch = tmp_path_factory.mktemp("tmpdir")  # $TMPDIR meanwhile: the server must leave nothing there
    python_envs = set(Path("/tmp").glob("python_env_*"))  # nor in the Python backend's fixed /tmp/python_env_*
    with contextlib.ExitStack() as stack:
        patch = stack.enter_context(pytest.MonkeyPatch.context())
        patch.setenv("TMPDIR", str(scratch))
        patch.setattr(tempfile, "tempdir", str(scratch))
        stack.callback(lambda: _nothing_left_in(scratch, python_envs))
        try:
            running = stack.enter_context(serve(repo, [MODEL, ENSEMBLE]))
        except AttnDeployError as e:
            if "failed to load" in str(e):  # the server ran and refused our model: a failure, not a skip
                raise
            pytest.skip(f"tritonserver cannot start on this machine: {e}")
        yield running.url


def _nothing_left_in(folder: Path, python_envs: set[Path]) -> None:
    left = sorted(p.name for p in folder.iterdir()) + sorted(str(p) for p in set(Path("/tmp").glob("python_env_*")) - python_envs)
    assert not left, f"left after the server stopped: {left}"


def client(url: str):
    return http.InferenceServerClient(url.removeprefix("http://"), concurrency=8)


def infer(c, x: np.ndarray) -> np.ndarray:
    tensor = http.InferInput("input", list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    return c.infer(MODEL, [tensor]).as_numpy("output")


def torch_reference(x: np.ndarray) -> np.ndarray:
    from attn_deploy.zoo import get_entry

    with torch.no_grad():
        return get_entry("sagan-256").build()(torch.from_numpy(x)).numpy()


def test_served_outputs_match_pytorch(server):
    x = np.random.default_rng(0).standard_normal(SHAPE, dtype=np.float32)
    got, ref = infer(client(server), x), torch_reference(x)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)  # the fp32 preset
    other = infer(client(server), x[:, :, ::-1].copy())
    assert not np.allclose(other, got)  # the output depends on the input


def test_concurrent_batch1_requests_are_batched(server):
    c = client(server)
    before = c.get_inference_statistics(MODEL)["model_stats"][0]
    xs = [np.random.default_rng(i).standard_normal(SHAPE, dtype=np.float32) for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda x: infer(client(server), x), xs))
    refs = torch_reference(np.concatenate(xs))
    for i, out in enumerate(outs):
        np.testing.assert_allclose(out, refs[i : i + 1], atol=1e-4, rtol=1e-4)
    after = c.get_inference_statistics(MODEL)["model_stats"][0]
    requests = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert requests == 8 and executions < requests  # the dynamic batcher ran some requests together


def test_check_through_the_server(run_cli, server):
    code, out, err = run_cli("check", "zoo:sagan-256", "--input-shape", INPUT_SHAPE, "--backends", "torch,triton",
                             "--triton-url", server, "--triton-model", MODEL)
    assert code == 0, out + err
    assert "triton:sagan-python " in out and "PASS" in out


def test_check_names_a_missing_model(run_cli, server):
    run_cli("check", "zoo:sagan-256", "--input-shape", INPUT_SHAPE, "--backends", "torch,triton",
            "--triton-url", server, "--triton-model", "nope").assert_error("does not serve a ready model 'nope'")


def test_served_ensemble_preprocesses_images(server, image_model):
    _, module = image_model
    c = client(server)
    rng = np.random.default_rng(1)
    outputs = []
    for size in ((60, 75), (24, 30)):
        images = rng.integers(0, 256, (1, *size, 3), dtype=np.uint8)
        tensor = http.InferInput("image", list(images.shape), "UINT8")
        tensor.set_data_from_numpy(images, binary_data=True)
        got = c.infer(ENSEMBLE, [tensor]).as_numpy("features")
        with torch.no_grad():
            ref = module(torch.from_numpy(preprocess_reference(images, *IMAGE_SHAPE[2:]))).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)
        outputs.append(got)
    assert not np.allclose(*outputs)  # the output depends on the image
