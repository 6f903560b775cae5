"""``config.pbtxt`` from a ``ModelSpec``, built and checked with Triton's own schema.

The configuration is a ``inference.ModelConfig`` message (``tritonclient.grpc.model_config_pb2``),
written with protobuf's text format, parsed back with the same schema and compared with the model's
I/O before anything is written. A model is batched by Triton (``max_batch_size > 0``, dims without
the batch axis, ``dynamic_batching``) when axis 0 of every input and output is dynamic.
"""

from __future__ import annotations

from typing import Any

from attn_deploy import defaults
from attn_deploy.artifact.manifest import TensorSpec
from attn_deploy.errors import InputError
from attn_deploy.package.models import ModelSpec, PackageOptions

#: NumPy dtype name -> Triton data type.
DATA_TYPES = {
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "uint16": "TYPE_UINT16", "uint32": "TYPE_UINT32", "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8", "int16": "TYPE_INT16", "int32": "TYPE_INT32", "int64": "TYPE_INT64",
    "float16": "TYPE_FP16", "float32": "TYPE_FP32", "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16",
}
#: The file a backend loads from the version folder.
MODEL_FILES = {"onnxruntime": "model.onnx", "tensorrt": "model.plan", "python": "model.py"}


def schema() -> Any:
    """Triton's model-configuration protobuf module (ships with tritonclient)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except (ImportError, RuntimeError) as e:
        raise InputError(f"Triton's model-configuration schema is not installed ({e}); pip install 'attn-deploy[serve]'") from None
    return model_config_pb2


def batch_is_dynamic(spec: ModelSpec) -> bool:
    return all(t.shape and 0 in t.dynamic_axes for t in (*spec.inputs, *spec.outputs))


def max_batch_size(spec: ModelSpec, options: PackageOptions) -> int:
    """``options.max_batch_size``, or for a dynamic batch axis 8 (or the largest preferred size, if larger) and 0 for a
    static one; InputError for a bad pair."""
    dynamic = batch_is_dynamic(spec)
    preferred = spec.preferred_batch_sizes
    if preferred and not dynamic:
        raise InputError(f"{spec.name}: preferred batch sizes from --bench-report need a dynamic batch axis (export with --dynamic 0)")
    if options.max_batch_size is None:
        return max((defaults.TRITON_MAX_BATCH_SIZE, *preferred)) if dynamic else 0
    if options.max_batch_size < 0:
        raise InputError(f"--max-batch-size {options.max_batch_size}: give 0 (no batching) or a positive size")
    if options.max_batch_size > 0 and not dynamic:
        raise InputError(f"{spec.name}: --max-batch-size {options.max_batch_size} needs a dynamic batch axis (export with --dynamic 0), or pass --max-batch-size 0")
    if preferred and max(preferred) > options.max_batch_size:
        raise InputError(f"{spec.name}: --max-batch-size {options.max_batch_size} is below the preferred batch size {max(preferred)} from --bench-report; "
                         "raise it or leave it out")
    return options.max_batch_size


def _dims(tensor: TensorSpec, batched: bool, model: str) -> list[int]:
    if tensor.shape is None:
        raise InputError(f"{model}: {tensor.name} has no known rank; Triton needs its dims (re-export the model)")
    dims = [d if isinstance(d, int) and d > 0 else -1 for d in tensor.shape]
    return dims[1:] if batched else dims


def _data_type(tensor: TensorSpec, model: str) -> str:
    if tensor.dtype not in DATA_TYPES:
        raise InputError(f"{model}: {tensor.name} has dtype {tensor.dtype}, which Triton does not serve")
    return DATA_TYPES[tensor.dtype]


def build_config(spec: ModelSpec, options: PackageOptions) -> Any:
    """The ``ModelConfig`` message of ``spec``."""
    pb = schema()
    batch = max_batch_size(spec, options)
    if spec.backend == "ensemble":
        config = pb.ModelConfig(name=spec.name, platform="ensemble", max_batch_size=batch)
    else:
        config = pb.ModelConfig(name=spec.name, backend=spec.backend, max_batch_size=batch)
    if spec.backend in ("onnxruntime", "tensorrt"):
        config.default_model_filename = MODEL_FILES[spec.backend]
    for t in spec.inputs:
        config.input.add(name=t.name, data_type=pb.DataType.Value(_data_type(t, spec.name)), dims=_dims(t, batch > 0, spec.name))
    for t in spec.outputs:
        config.output.add(name=t.name, data_type=pb.DataType.Value(_data_type(t, spec.name)), dims=_dims(t, batch > 0, spec.name))
    if spec.backend == "ensemble":  # scheduled by its steps: no batcher, instances or warm-up of its own
        for step in spec.steps:
            added = config.ensemble_scheduling.step.add(model_name=step.model, model_version=-1)
            added.input_map.update(step.inputs)
            added.output_map.update(step.outputs)
        return config
    if batch > 0:
        config.dynamic_batching.max_queue_delay_microseconds = options.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(spec.preferred_batch_sizes)
    gpu = spec.backend == "tensorrt" or (spec.backend == "onnxruntime" and options.gpu)
    config.instance_group.add(count=options.instances, kind=pb.ModelInstanceGroup.KIND_GPU if gpu else pb.ModelInstanceGroup.KIND_CPU)
    warmup = config.model_warmup.add(name="manifest_shapes", batch_size=1, count=1)
    for t in spec.inputs:
        shape = spec.warmup_shapes[t.name]
        warmup.inputs[t.name].CopyFrom(
            pb.ModelWarmup.Input(data_type=pb.DataType.Value(_data_type(t, spec.name)), dims=shape[1:] if batch > 0 else shape, random_data=True)
        )
    return config


def parse_config(text: str, where: str = "config.pbtxt") -> Any:
    """``text`` parsed with Triton's schema; InputError naming ``where`` when it does not parse."""
    from google.protobuf import text_format

    try:
        return text_format.Parse(text, schema().ModelConfig())
    except text_format.ParseError as e:
        raise InputError(f"{where} does not parse with Triton's model-configuration schema: {e}") from None


def verify_config(config: Any, spec: ModelSpec) -> None:
    """The configuration serves exactly ``spec``'s I/O (names, data types, dims); AssertionError-free InputError otherwise."""
    pb = schema()
    batched = config.max_batch_size > 0
    for kind, have, want in (("input", config.input, spec.inputs), ("output", config.output, spec.outputs)):
        got = [(t.name, pb.DataType.Name(t.data_type), list(t.dims)) for t in have]
        expected = [(t.name, _data_type(t, spec.name), _dims(t, batched, spec.name)) for t in want]
        if got != expected:
            raise InputError(f"{spec.name}: config.pbtxt {kind}s {got} differ from the model's {expected}")
    for w in config.model_warmup:
        for name, value in w.inputs.items():
            if len(value.dims) != len(_dims(next(t for t in spec.inputs if t.name == name), batched, spec.name)):
                raise InputError(f"{spec.name}: warm-up input {name} has rank {len(value.dims)}, the model's differs")


def render_config(spec: ModelSpec, options: PackageOptions) -> str:
    """``config.pbtxt`` text for ``spec``: built, written, parsed back with the schema and verified."""
    from google.protobuf import text_format

    text: str = text_format.MessageToString(build_config(spec, options))
    verify_config(parse_config(text, f"{spec.name}/config.pbtxt"), spec)
    return text
