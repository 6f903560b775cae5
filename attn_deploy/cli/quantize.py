"""``attn-deploy quantize``: dynamic int8 for ONNX Runtime."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli import options as opt
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors
from attn_deploy.cli.options import Arch, UnsafeLoad, choose, file_option, json_flag
from attn_deploy.shapes import parse_inputs, parse_shape


@one_line_errors
def quantize(
    model: Annotated[str, typer.Argument(help="An .onnx file, or any MODEL that `export` accepts (exported first).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output int8 .onnx file.")],
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="One weight scale per output channel (default) or one per tensor.")] = True,
    weight_type: Annotated[str, typer.Option(help="Weight type: int8 or uint8 (activations are uint8, quantized at run time).")] = defaults.WEIGHT_TYPE,
    full_range: Annotated[bool, typer.Option("--full-range", help="Use all 8 bits of int8 weights. Exact only on CPUs with VNNI/AMX; ONNX Runtime's int8 kernels saturate on AVX2 without it. Default: 7-bit weights (reduce_range).")] = False,
    exclude: Annotated[list[str] | None, typer.Option("--exclude", help="Keep nodes float whose name or op type matches this glob; repeatable.")] = None,
    include_convs: Annotated[bool, typer.Option("--include-convs", help="Also quantize the remaining Conv nodes (ConvInteger: often slower than fp32 on CPU).")] = False,
    float_qk: Annotated[bool, typer.Option("--float-qk/--int8-qk", help="Keep the 1x1 Conv projections feeding attention's Q and K float (default): softmax amplifies their error. --int8-qk quantizes them too: faster, less exact.")] = True,
    quantize_attention: Annotated[bool, typer.Option("--quantize-attention", help="Also run FusedAttention's softmax x V product in int8 (a different function body; less exact for long rows).")] = False,
    lower: Annotated[bool, typer.Option("--lower/--no-lower", help="Lower FusedAttention for ONNX Runtime, as `lower --target ort` does (default; not with --quantize-attention). Dynamic int8 runs only in ONNX Runtime; --no-lower keeps the portable FusedAttention nodes.")] = True,
    torch_out: Annotated[bool, typer.Option("--torch", help="Also write OUT.torch.pt: PyTorch dynamic int8 (1x1 convs as Linear) for PyTorch CPU inference; it cannot be exported to ONNX.")] = False,
    input_shape: Annotated[list[str] | None, typer.Option("--input-shape", help="For a MODEL that is not .onnx: input shape like 1x3x800x1333 (repeat per input), as for export.")] = None,
    calibrate: Annotated[Path | None, typer.Option("--calibrate", help="Static int8: calibrate on these samples (an image, a folder of images, or an .npz; images preprocessed as the manifest says) and quantize convolutions and projections as Q/DQ. Without it: dynamic int8 of the projections.")] = None,
    calibrate_count: Annotated[int, typer.Option("--calibrate-count", min=1, help="Static int8: calibration samples used at most.")] = defaults.CALIBRATE_COUNT,
    calibrate_method: Annotated[str, typer.Option("--calibrate-method", help="Static int8: percentile (default; robust to outlier activations), minmax or entropy.")] = defaults.CALIBRATE_METHOD,
    target_cosine: Annotated[float, typer.Option("--target-cosine", min=0.0, max=1.0, help="Static int8: nodes go back to float, noisiest first, until every output's cosine to the float model on the calibration samples reaches this; 0 quantizes every candidate.")] = defaults.TARGET_COSINE,
    int8_glue: Annotated[bool, typer.Option("--int8-glue/--float-glue", help="Static int8: also run the ops between convolutions (adds, sigmoids, multiplies, concatenations, splits, pooling, resizes) on int8 tensors, so activations stay int8 from one convolution to the next (default). --float-glue quantizes only convolutions and projections.")] = True,
    qdq_for: Annotated[str, typer.Option("--for", help="Static int8: the runtime the Q/DQ model is for. onnxruntime (default): uint8 activations and int32 biases, what its CPU kernels run fastest, attention lowered. tensorrt: symmetric int8 activations and float biases, what TensorRT's builder accepts (build-trt), FusedAttention nodes kept.")] = "onnxruntime",
    min_matched: Annotated[float, typer.Option("--min-matched", min=0.0, max=1.0, help="Static int8 of a detector: instead of a cosine, its detections on every calibration sample must match the float model's at least this well (matched / max count at IoU 0.5, as check's --min-matched).")] = defaults.DETECTION_MIN_MATCHED,
    inputs: opt.Inputs = None,
    val_range: opt.ValRange = None,
    data: opt.Data = None,
    allow_nonfinite: opt.AllowNonfinite = False,
    vocab: opt.Vocab = None,
    arch: Arch = None,
    unsafe_load: UnsafeLoad = False,
    iterations: Annotated[int, typer.Option(min=0, help="Timed runs per model for the latency comparison; 0 skips parity and latency.")] = defaults.QUANTIZE_ITERATIONS,
    report_file: Annotated[Path | None, file_option("--report", "Write the report as JSON to this file.")] = None,
    as_json: Annotated[bool, json_flag("Print the report as JSON on stdout.")] = False,
) -> None:
    """int8 for ONNX Runtime, attention kept float and lowered; parity and latency report.

    Dynamic by default (1x1 Conv projections into MatMuls, quantize_dynamic). With --calibrate,
    static: Q/DQ int8 of convolutions and projections calibrated on real samples, the noisiest
    nodes kept float until outputs reach --target-cosine (what makes CNN backbones faster).

    Parity inputs as for check: images (a 3-channel NCHW input) uniform in [0,1], other floats N(0,1)
    (--val-range), masks ones, token ids below the embedding's size (--vocab), or --data; a
    detector's outputs are matched as detections.
    """
    from attn_deploy import api
    from attn_deploy.quantize import QuantizeOptions, write_report
    from attn_deploy.quantize.render import render_report, warning_lines

    options = QuantizeOptions(
        per_channel=per_channel,
        weight_type=choose(weight_type, defaults.WEIGHT_TYPES, "--weight-type"),  # type: ignore[arg-type]
        exclude=tuple(exclude or ()),
        include_convs=include_convs,
        reduce_range=not full_range,
        quantize_attention=quantize_attention,
        float_qk=float_qk,
        lower=lower,
        torch_output=output.with_suffix(".torch.pt") if torch_out else None,
        iterations=iterations,
        arch=arch,
        unsafe_load=unsafe_load,
        input_shapes=tuple(parse_shape(s) for s in input_shape or []),
        inputs=tuple(parse_inputs(inputs or [])),
        val_range=opt.parse_range(val_range),
        data=data,
        allow_nonfinite=allow_nonfinite,
        vocab=vocab,
        calibrate=calibrate,
        calibrate_count=calibrate_count,
        calibrate_method=choose(calibrate_method, defaults.CALIBRATE_METHODS, "--calibrate-method"),
        target_cosine=target_cosine or None,
        min_matched=min_matched,
        int8_glue=int8_glue,
        qdq_for=choose(qdq_for, defaults.QDQ_FOR, "--for"),
    )
    with err.status(f"quantizing {model} ..."):
        result = api.quantize(model, output, options)
    if report_file is not None:
        write_report(result.report, report_file)
    for line in warning_lines(result.warnings):
        err.print(line, highlight=False)
    if as_json:
        print(json.dumps(result.report, indent=2))
        return
    for item in render_report(result.report, f"{model} -> {output}"):
        out.print(item, highlight=False)
