"""``attn-deploy check``: the parity gate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attn_deploy import defaults
from attn_deploy.cli import options as opt
from attn_deploy.cli.app import err, out
from attn_deploy.cli.errors import one_line_errors


@one_line_errors
def check(
    source: Annotated[str, typer.Argument(help="Reference: a PyTorch MODEL (as for export) or an .onnx file.")],
    artifacts: Annotated[list[str] | None, typer.Argument(help="Candidates: .onnx files (ONNX Runtime) and .engine files (TensorRT). "
                                                                 "None with a PyTorch SOURCE: it is exported and checked in ONNX Runtime.")] = None,
    backends: opt.Backends = opt.BACKENDS,
    seed: opt.Seed = defaults.SEED,
    val_range: opt.ValRange = None,
    data: opt.Data = None,
    allow_nonfinite: opt.AllowNonfinite = False,
    vocab: opt.Vocab = None,
    inputs: opt.Inputs = None,
    input_shape: opt.NamedInputShapes = None,
    precision: Annotated[str, typer.Option(help="Tolerance preset: auto (what the stage that made each artifact recorded in its manifest, checked by sha256; else fp32), fp32, fp16 or int8.")] = defaults.PRECISION,
    atol: Annotated[list[str] | None, typer.Option(help="Absolute tolerance, VALUE or OUTPUT=VALUE; repeatable (e.g. --atol boxes=0.5).")] = None,
    rtol: Annotated[list[str] | None, typer.Option(help="Relative tolerance, VALUE or OUTPUT=VALUE; repeatable.")] = None,
    check_error_stat: Annotated[list[str] | None, typer.Option(help="elemwise, max, mean or median, or OUTPUT=STAT: which error must be within tolerance.")] = None,
    min_cosine: Annotated[float | None, typer.Option(help="Minimum cosine similarity per output (default from the preset).")] = None,
    iou: Annotated[float, typer.Option(help="Detections: IoU at which a candidate box matches a reference box.")] = defaults.DETECTION_IOU,
    min_matched: Annotated[float, typer.Option(help="Detections: minimum matched / max(reference, candidate) count, borderline detections not counted.")] = defaults.DETECTION_MIN_MATCHED,
    max_score_error: Annotated[float, typer.Option(help="Detections: maximum score difference of matched boxes.")] = defaults.DETECTION_MAX_SCORE_ERROR,
    score_threshold: Annotated[float | None, typer.Option(help="Detections: the detector's own score threshold. An unmatched detection "
                                                          "within --max-score-error of where the other side cut is borderline and not counted. "
                                                          "Default: read from the model (torchvision's score_thresh), else the manifest.")] = None,
    max_detections: Annotated[int | None, typer.Option(help="Detections: the detector's own limit on detections per image (torchvision's "
                                                       "detections_per_img); default as --score-threshold.")] = None,
    report: Annotated[Path | None, opt.file_option("--report", "Write the full report as JSON.")] = None,
    markdown: Annotated[Path | None, opt.file_option("--markdown", "Write a Markdown summary (fits a CI step summary).")] = None,
    junit: Annotated[Path | None, opt.file_option("--junit", "Write JUnit XML (one testcase per output).")] = None,
    arch: opt.Arch = None,
    unsafe_load: opt.UnsafeLoad = False,
    lower: opt.LowerFirst = False,
    triton_url: opt.TritonUrl = None,
    triton_model: opt.TritonModel = None,
    per_attention: Annotated[bool, typer.Option("--per-attention", help="Also compare every attention's output (matched by its ONNX "
                                                 "tensor) and name the first out of tolerance, with its PyTorch module; engines need "
                                                 "build-trt --debug-attention.")] = False,
    as_json: Annotated[bool, opt.json_flag("Print the JSON report on stdout instead of the table.")] = False,
) -> None:
    """Parity gate: exit 0 if every candidate matches SOURCE, 1 if one does not, 2 for usage or input errors.

    Presets (atol / rtol / error stat / min cosine), chosen per artifact by --precision auto:
    fp32 1e-4 / 1e-4 / elemwise / 0.99999; fp16 1e-2 / 1e-2 / elemwise / 0.999;
    int8 5e-2 / 5e-2 / median / 0.99. A detector's outputs (boxes, scores, labels, as export recorded
    them from what the model returns) are matched by class and IoU instead.

    Random inputs: images (a 3-channel NCHW input) uniform in [0,1], other floats N(0,1) (--val-range
    to change), masks ones, token ids below the embedding's size (--vocab); --data for real ones.
    """
    from attn_deploy import api
    from attn_deploy.check import tolerances as tol
    from attn_deploy.check.detection import DetectionThresholds
    from attn_deploy.check.gate import CheckOptions
    from attn_deploy.check.report import render_table, to_dict, write_reports

    options = CheckOptions(
        workload=opt.workload(backends, input_shape, arch, unsafe_load, lower, inputs, data, triton_url, triton_model),
        seed=seed,
        val_range=opt.parse_range(val_range),
        data=data,
        overrides=tol.ToleranceOverrides(
            atol=tol.parse_per_output(atol or [], "--atol"),  # type: ignore[arg-type]
            rtol=tol.parse_per_output(rtol or [], "--rtol"),  # type: ignore[arg-type]
            check_error_stat=tol.parse_per_output(check_error_stat or [], "--check-error-stat", str),  # type: ignore[arg-type]
            min_cosine=min_cosine,
        ),
        precision=opt.choose(precision, (defaults.PRECISION, *tol.PRESETS), "--precision"),
        detection=DetectionThresholds(iou, min_matched, max_score_error),
        selection=opt.detection_selection(score_threshold, max_detections),
        allow_nonfinite=allow_nonfinite,
        vocab=vocab,
        per_attention=per_attention,
    )
    with err.status("checking ...") as status:
        result = api.check(source, *(artifacts or []), options=options, progress=lambda msg: status.update(msg + " ..."))
    write_reports(result, report, markdown, junit)
    if as_json:
        print(json.dumps(to_dict(result), indent=2))
    else:
        out.print(render_table(result))
        out.print("[green]PASS[/green]" if result.passed else "[red]FAIL[/red]: a candidate does not match the reference")
    if not result.passed:
        raise typer.Exit(1)
