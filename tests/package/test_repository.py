"""``package --triton``: the repository's layout, every config.pbtxt against Triton's schema and the
model's own I/O, and bad inputs (one error line, exit 2, nothing written)."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient is not installed (the serve extra)")


def parse(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def graph_io(path: Path) -> list[tuple[str, str, str, list[int]]]:
    """(kind, name, Triton data type, dims with -1 for dynamic) of every graph input and output, read with onnx alone."""
    model = onnx.load(str(path))
    rows = []
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
            triton = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64"}[dtype.name]
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in v.type.tensor_type.shape.dim]
            rows.append((kind, v.name, triton, dims))
    return rows


def config_io(config: model_config_pb2.ModelConfig) -> list[tuple[str, str, str, list[int]]]:
    batch = [-1] if config.max_batch_size > 0 else []
    return [(kind, t.name, model_config_pb2.DataType.Name(t.data_type), batch + list(t.dims))
            for kind, ts in (("input", config.input), ("output", config.output)) for t in ts]


def tree(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


def test_python_backend_repository(run_cli, sagan_onnx, tmp_path):
    repo = tmp_path / "repo"
    code, out, err = run_cli("package", sagan_onnx, "--triton", repo, "--python-backend", "--instances", "2", "--json")
    assert code == 0, err
    assert {m["name"]: m["backend"] for m in json.loads(out)["models"]} == {"sagan": "onnxruntime", "sagan-python": "python"}
    assert sorted(tree(repo)) == ["README.md", "sagan-python.perf_data.json", "sagan-python/1/model.onnx", "sagan-python/1/model.py",
                                  "sagan-python/config.pbtxt", "sagan.perf_data.json", "sagan/1/model.onnx", "sagan/config.pbtxt"]
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]  # no temporary folder left beside it
    for name, backend in (("sagan", "onnxruntime"), ("sagan-python", "python")):
        config = parse(repo / name / "config.pbtxt")
        assert (config.name, config.backend) == (name, backend)
        assert config_io(config) == graph_io(sagan_onnx) == graph_io(repo / name / "1" / "model.onnx")
        assert config.max_batch_size == 8 and config.HasField("dynamic_batching")
        assert [(g.kind, g.count) for g in config.instance_group] == [(model_config_pb2.ModelInstanceGroup.KIND_CPU, 2)]
        (warmup,) = config.model_warmup
        assert list(warmup.inputs["input"].dims) == [256, 16, 16] and warmup.batch_size == 1
    source = (repo / "sagan-python" / "1" / "model.py").read_text()
    compile(source, "model.py", "exec")
    assert "sys.path.insert" in source and "site-packages" in source  # the stub does not inherit PYTHONPATH
    readme = (repo / "README.md").read_text()
    assert "--triton-model sagan" in readme and "perf_analyzer -m sagan -u localhost:8000 --input-data sagan.perf_data.json" in readme
    assert "kind: InferenceService" in readme
    (request,) = json.loads((repo / "sagan.perf_data.json").read_text())["data"]  # one batch-1 request, batch axis left out
    data = np.frombuffer(base64.b64decode(request["input"]["b64"]), np.float32)
    assert request["input"]["shape"] == [256, 16, 16] and data.size == 256 * 16 * 16 and data.std() > 0.5


def test_static_batch(run_cli, sagan_static_onnx, tmp_path):
    repo = tmp_path / "repo"
    assert run_cli("package", sagan_static_onnx, "--triton", repo, "--name", "block").exit_code == 0
    config = parse(repo / "block" / "config.pbtxt")
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 256, 16, 16]
    assert config_io(config) == graph_io(sagan_static_onnx)

    run_cli("package", sagan_static_onnx, "--triton", tmp_path / "other", "--max-batch-size", "4").assert_error("needs a dynamic batch axis")
    assert not (tmp_path / "other").exists()


def test_existing_repository_needs_force(run_cli, sagan_onnx, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep.txt").write_text("mine")
    run_cli("package", sagan_onnx, "--triton", repo).assert_error("exists and is not empty")
    assert tree(repo) == {"keep.txt": hashlib.sha256(b"mine").hexdigest()}
    assert run_cli("package", sagan_onnx, "--triton", repo, "--force").exit_code == 0
    assert "keep.txt" not in tree(repo) and "sagan/config.pbtxt" in tree(repo)
    assert [p.name for p in tmp_path.iterdir()] == ["repo"]


@pytest.mark.parametrize("name, match", [("bad name", "Triton model names"), ("../up", "Triton model names"), (".hidden", "Triton model names")])
def test_bad_model_names(run_cli, sagan_onnx, tmp_path, name, match):
    run_cli("package", sagan_onnx, "--triton", tmp_path / "repo", "--name", name).assert_error(match)
    assert list(tmp_path.iterdir()) == []


def test_bad_tensor_name(run_cli, tmp_path):
    x = onnx.helper.make_tensor_value_info("__x", onnx.TensorProto.FLOAT, [1, 4])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Relu", ["__x"], ["y"])], "g", [x], [y])
    path = tmp_path / "relu.onnx"
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 18)], ir_version=10), path)
    run_cli("package", path, "--triton", tmp_path / "repo").assert_error("tensor name '__x'")
    assert not (tmp_path / "repo").exists()


def fake_engine(folder: Path, source: Path, plugin: Path | None, caps: list[str] | str = "builder default", **report_fields: object) -> Path:
    """An engine file and the build report build-trt writes beside it (the parts package reads; ``report_fields`` replace them)."""
    engine = folder / "sagan.engine"
    engine.write_bytes(b"serialized plan")
    report = {
        "source": str(source),
        "engine_sha256": hashlib.sha256(engine.read_bytes()).hexdigest(),
        "profiles": [[{"name": "input", "min": [1, 256, 16, 16], "opt": [2, 256, 16, 16], "max": [8, 256, 16, 16]}]],
        "precision": "fp32",
        "compute_capabilities": caps,
        "options": {"keep_io_fp32": True},
        "plugins": {"libraries": [str(plugin)] if plugin else [], "fused_attention_creator": "attn_deploy::FusedAttention v1" if plugin else None},
        **report_fields,
    }
    (folder / "sagan.engine.json").write_text(json.dumps(report))
    return engine


def test_tensorrt_plan_with_plugin(run_cli, sagan_onnx, tmp_path):
    plugin = tmp_path / "libattn_deploy_plugin.so"
    plugin.write_bytes(b"\x7fELF plugin")
    engine = fake_engine(tmp_path, sagan_onnx, plugin)
    repo = tmp_path / "repo"
    assert run_cli("package", engine, sagan_onnx, "--triton", repo, "--name", "sagan-trt", "--name", "sagan-ort").exit_code == 0
    config = parse(repo / "sagan-trt" / "config.pbtxt")
    assert config.backend == "tensorrt" and config.default_model_filename == "model.plan"
    assert config_io(config) == graph_io(sagan_onnx)
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert list(config.model_warmup[0].inputs["input"].dims) == [256, 16, 16]
    assert (repo / "sagan-trt" / "1" / "model.plan").read_bytes() == b"serialized plan"
    assert (repo / "sagan-trt" / "1" / plugin.name).read_bytes() == plugin.read_bytes()
    assert f"--backend-config=tensorrt,plugins=/models/sagan-trt/1/{plugin.name}" in (repo / "README.md").read_text()
    assert parse(repo / "sagan-ort" / "config.pbtxt").backend == "onnxruntime"


def test_engine_errors(run_cli, sagan_onnx, tmp_path):
    plugin = tmp_path / "lib.so"
    plugin.write_bytes(b"lib")
    engine = fake_engine(tmp_path, sagan_onnx, plugin)
    plugin.unlink()
    run_cli("package", engine, "--triton", tmp_path / "repo").assert_error("its library is not found; pass --plugin")
    (tmp_path / "sagan.engine.json").unlink()
    run_cli("package", engine, "--triton", tmp_path / "repo").assert_error("no build report")
    assert not (tmp_path / "repo").exists()


def test_engine_for_another_gpu(run_cli, sagan_onnx, tmp_path):
    engine = fake_engine(tmp_path, sagan_onnx, None, caps=["8.9", "12.0"])
    run_cli("package", engine, "--triton", tmp_path / "repo", "--gpu-arch", "9.0").assert_error(
        "was built for compute capability 8.9, 12.0, not 9.0; rebuild it with attn-deploy build-trt --runtime tensorrt-rtx --compute-capability 9.0")
    run_cli("package", engine, "--triton", tmp_path / "repo", "--compute-capability", "hopper").assert_error("like 9.0")
    assert not (tmp_path / "repo").exists()
    code, out, err = run_cli("package", engine, "--triton", tmp_path / "repo", "--compute-capability", "sm_89", "--json")
    assert code == 0, err
    assert json.loads(out)["notes"] == []
    unknown = fake_engine(tmp_path, sagan_onnx, None)
    code, out, err = run_cli("package", unknown, "--triton", tmp_path / "other", "--compute-capability", "9.0")
    assert code == 0, err
    assert "note: sagan.engine: its build report records no compute capability" in " ".join(out.split())
