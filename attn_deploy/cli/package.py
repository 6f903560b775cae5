"""``attn-deploy package``: a Triton Inference Server model repository for the artifacts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli import options as opt
from attn_deploy.cli.app import out
from attn_deploy.cli.errors import one_line_errors


@one_line_errors
def package(
    artifacts: Annotated[list[str], typer.Argument(help=".onnx files (onnxruntime backend) and .engine files built by build-trt (tensorrt backend).")],
    triton: Annotated[Path, typer.Option("--triton", help="The model repository folder to write (atomically; refused if it exists and is not empty).")],
    name: Annotated[list[str] | None, typer.Option("--name", help="Model name, once per ARTIFACT in order (default: the file's stem).")] = None,
    python_backend: Annotated[bool, typer.Option("--python-backend", help="Also a python-backend model NAME-python per .onnx, running it with ONNX Runtime on the CPU.")] = False,
    instances: Annotated[int, typer.Option(min=1, help="Instances of each model (instance_group count).")] = defaults.TRITON_INSTANCES,
    gpu: Annotated[bool, typer.Option("--gpu", help="Run the onnxruntime models on the GPU (KIND_GPU; tensorrt models always are).")] = False,
    max_batch_size: Annotated[int | None, typer.Option(help=f"Largest batch Triton forms (default {defaults.TRITON_MAX_BATCH_SIZE} for a dynamic batch axis, 0 for a static one).")] = None,
    max_queue_delay_us: Annotated[int, typer.Option(min=0, help="Dynamic batching: how long a request waits for others (microseconds).")] = defaults.TRITON_MAX_QUEUE_DELAY_US,
    plugin: Annotated[Path | None, typer.Option(help="The FusedAttention plugin library of a plugin engine (default: the one its build report names).")] = None,
    ensemble: Annotated[bool | None, typer.Option(
        "--ensemble/--no-ensemble",
        help="Also NAME-preprocess (uint8 RGB image -> the model's input: resize, scale, normalise as the manifest records) and "
             "NAME-ensemble chaining it in front of the model. Default: for models whose manifest records image preprocessing.",
    )] = None,
    compute_capability: Annotated[str | None, typer.Option(
        "--compute-capability", "--gpu-arch", help="The target GPU's compute capability (9.0 for H100/H200): an engine built for others is refused.",
    )] = None,
    bench_report: Annotated[Path | None, typer.Option(
        "--bench-report", help="The JSON report of attn-deploy bench MODEL FILE --batch 1,2,4,8 --report (or --json) on these files: the batch sizes within 10% of the best "
                               "throughput become dynamic_batching's preferred_batch_size (a report of other files is refused).",
    )] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing, non-empty repository folder.")] = False,
    as_json: Annotated[bool, opt.json_flag("Print what was written as JSON on stdout.")] = False,
) -> None:
    """Write a Triton model repository: config.pbtxt per model (validated with Triton's schema), version folders, a README."""
    from attn_deploy import api
    from attn_deploy.package import PackageOptions

    options = PackageOptions(
        names=tuple(name or ()), python_backend=python_backend, instances=instances, gpu=gpu, max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us, plugin=plugin, force=force, ensemble=ensemble,
        compute_capability=compute_capability, bench_report=bench_report,
    )
    result = api.package(artifacts, triton, options)
    if as_json:
        print(json.dumps(result.to_dict(), indent=2))
        return
    for m in result.models:
        out.print(f"{m.name}: {m.backend}" + (f" (plugin {m.plugin.name})" if m.plugin else ""), highlight=False)
        for note in m.notes:
            out.print(f"  note: {note}", highlight=False)
    out.print(f"wrote {result.repository} (start the server as its README.md says)", highlight=False)
