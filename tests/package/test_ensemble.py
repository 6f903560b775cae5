"""The ensemble ``package --triton`` writes for a model whose manifest records image preprocessing: its
config.pbtxt chains NAME-preprocess into NAME with matching names, dtypes and dims; the preprocessing
model does what the manifest says (against torch, and against ``check --data``'s own image loading);
a broken chain is refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from google.protobuf import text_format

from tests.package.conftest import IMAGE_SHAPE, IMAGENET, preprocess_reference
from tests.package.test_repository import config_io, fake_engine, graph_io, parse

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (the serve extra)")


def test_ensemble_chains_preprocessing_into_the_model(run_cli, image_model, tmp_path):
    path, _ = image_model
    repo = tmp_path / "repo"
    code, out, err = run_cli("package", path, "--triton", repo, "--python-backend", "--json")
    assert code == 0, err
    assert {m["name"]: m["backend"] for m in json.loads(out)["models"]} == {
        "net": "onnxruntime", "net-python": "python", "net-preprocess": "onnxruntime", "net-ensemble": "ensemble",
        "net-preprocess-python": "python", "net-ensemble-python": "ensemble",
    }
    for suffix in ("", "-python"):
        ensemble = parse(repo / f"net-ensemble{suffix}" / "config.pbtxt")
        pre = parse(repo / f"net-preprocess{suffix}" / "config.pbtxt")
        model = parse(repo / f"net{suffix}" / "config.pbtxt")
        assert ensemble.platform == "ensemble" and not ensemble.backend and (repo / f"net-ensemble{suffix}" / "1").is_dir()
        first, second = ensemble.ensemble_scheduling.step
        assert (first.model_name, second.model_name) == (f"net-preprocess{suffix}", f"net{suffix}")
        assert dict(first.input_map) == {"image": "image"} and dict(second.output_map) == {"features": "features"}
        assert first.output_map["input"] == second.input_map["input"]  # the preprocessed tensor flows into the model
        # names, dtypes and dims: image in, the model's own input out, the model's outputs from the ensemble
        assert config_io(pre) == [("input", "image", "TYPE_UINT8", [-1, -1, -1, 3]), ("output", "input", "TYPE_FP32", [-1, 3, 32, 40])]
        assert [t for t in config_io(pre) if t[0] == "output"] == [("output", *t[1:]) for t in graph_io(path) if t[0] == "input"]
        assert [t for t in config_io(ensemble) if t[0] == "output"] == [t for t in graph_io(path) if t[0] == "output"] == \
            [t for t in config_io(model) if t[0] == "output"]
        assert ensemble.max_batch_size == pre.max_batch_size == model.max_batch_size == 8


def test_preprocessing_model_follows_the_manifest(image_model, tmp_path, run_cli):
    from PIL import Image

    from attn_deploy.runtime.inputs import InputSpec, image_feeds

    path, _ = image_model
    repo = tmp_path / "repo"
    assert run_cli("package", path, "--triton", repo).exit_code == 0
    session = ort.InferenceSession(str(repo / "net-preprocess" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    _, _, height, width = IMAGE_SHAPE
    rng = np.random.default_rng(0)
    for size in ((70, 90), (20, 25), (height, width)):  # shrink, enlarge, keep
        images = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
        (got,) = session.run(None, {"image": images})
        assert got.shape == (2, 3, height, width) and got.dtype == np.float32
        np.testing.assert_allclose(got, preprocess_reference(images, height, width), atol=2e-5)
    # check --data's loader (PIL resizes in uint8, so within one grey level)
    Image.fromarray(images[0]).save(tmp_path / "img.png")
    (feeds,) = image_feeds(tmp_path / "img.png", [InputSpec("input", IMAGE_SHAPE, np.dtype(np.float32))], IMAGENET)
    (got,) = session.run(None, {"image": images[:1]})
    np.testing.assert_allclose(got, feeds["input"], atol=1.01 / 255 / min(IMAGENET["std"]))


def test_ensemble_in_front_of_an_fp16_engine(run_cli, image_model, tmp_path):
    path, _ = image_model
    profile = [[{"name": "input", "min": [1, 3, 32, 40], "opt": [2, 3, 32, 40], "max": [4, 3, 32, 40]}]]
    engine = fake_engine(tmp_path, path, None, profiles=profile, precision="fp16", options={"keep_io_fp32": False})
    repo = tmp_path / "repo"
    assert run_cli("package", engine, "--triton", repo, "--name", "net-trt").exit_code == 0
    pre, ensemble = parse(repo / "net-trt-preprocess" / "config.pbtxt"), parse(repo / "net-trt-ensemble" / "config.pbtxt")
    assert pre.backend == "onnxruntime" and [s.model_name for s in ensemble.ensemble_scheduling.step] == ["net-trt-preprocess", "net-trt"]
    assert config_io(pre)[1] == ("output", "input", "TYPE_FP16", [-1, 3, 32, 40])  # the plan's fp16 input
    session = ort.InferenceSession(str(repo / "net-trt-preprocess" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": np.full((1, 50, 60, 3), 255, np.uint8)})
    assert got.dtype == np.float16 and np.allclose(got[0, :, 0, 0], (1 - np.array(IMAGENET["mean"])) / IMAGENET["std"], atol=2e-3)


def test_ensemble_flags(run_cli, image_model, sagan_onnx, tmp_path):
    path, _ = image_model
    assert run_cli("package", path, "--triton", tmp_path / "plain", "--no-ensemble").exit_code == 0
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["README.md", "net", "net.perf_data.json"]
    run_cli("package", sagan_onnx, "--triton", tmp_path / "repo", "--ensemble").assert_error("--ensemble needs one 3-channel NCHW float input")
    assert not (tmp_path / "repo").exists()


def test_broken_chain_is_refused(image_model):
    from attn_deploy.errors import InputError
    from attn_deploy.package import PackageOptions
    from attn_deploy.package.config import render_config
    from attn_deploy.package.ensemble import verify_ensemble
    from attn_deploy.package.models import plan_models

    path, _ = image_model
    options = PackageOptions()
    configs = {m.name: text_format.Parse(render_config(m, options), model_config_pb2.ModelConfig()) for m in plan_models([path], options)}
    verify_ensemble(configs["net-ensemble"], configs)
    configs["net"].input[0].data_type = model_config_pb2.TYPE_FP16
    with pytest.raises(InputError, match=r"net-ensemble step 2 \(net\) input input: TYPE_FP32 \[3, 32, 40\] does not fit TYPE_FP16"):
        verify_ensemble(configs["net-ensemble"], configs)
    configs["net"].input[0].data_type = model_config_pb2.TYPE_FP32
    configs["net"].input[0].dims[:] = [3, 64, 64]
    with pytest.raises(InputError, match="does not fit"):
        verify_ensemble(configs["net-ensemble"], configs)
    del configs["net-preprocess"]
    with pytest.raises(InputError, match="no model 'net-preprocess' in the repository"):
        verify_ensemble(configs["net-ensemble"], configs)
