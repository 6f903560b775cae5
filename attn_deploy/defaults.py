"""Defaults every entry point shares (library, API and CLI read them from here, once)."""

from __future__ import annotations

#: ONNX opset of exports: accepted by ONNX Runtime 1.2x/1.3x and TensorRT 10.x, and the dynamo
#: exporter's native opset, so no version conversion (which would inline our function) happens.
OPSET = 18
#: Oldest opset ``export`` accepts.
MIN_OPSET = 17
#: Attention working-memory budget per node when lowering (bytes).
MAX_ATTN_MEM = 256 << 20
#: Size guard: running a model whose estimated memory is above this fraction of the memory available
#: is warned about; above all of it, refused.
MEMORY_WARN_FRACTION = 0.5
#: ``check``/``bench`` backends, in reference-first order.
BACKENDS: tuple[str, ...] = ("torch", "ort", "trt")
#: Exporter tried first (``auto``: dynamo, then TorchScript if that fails).
EXPORTER = "auto"
EXPORTERS: tuple[str, ...] = ("auto", "dynamo", "torchscript")
#: Runtime ``lower`` targets, and which implementation it picks per node.
LOWER_TARGET = "ort"
LOWER_IMPL = "auto"
#: Seed of the random inputs of ``check`` and ``bench``.
SEED = 0
#: ``check``: tolerance preset (``auto``: from each artifact's precision).
PRECISION = "auto"
#: ``check`` on detectors: IoU at which boxes match, matched fraction and score difference allowed.
DETECTION_IOU = 0.5
DETECTION_MIN_MATCHED = 0.99
DETECTION_MAX_SCORE_ERROR = 0.05
#: ``bench``: untimed runs, then at least this many timed runs and at least this many seconds of them.
BENCH_WARMUP = 3
BENCH_ITERATIONS = 20
BENCH_MIN_SECONDS = 2.0
#: ``demo``: the model, where it is exported, and its (shorter) timing per backend.
DEMO_MODEL = "zoo:sagan-256"
DEMO_OUT_DIR = "build/demo"
DEMO_ITERATIONS = 10
DEMO_MIN_SECONDS = 1.0
#: ``quantize``: weight type, and timed runs per model for the report's latency (0 skips parity).
WEIGHT_TYPE = "int8"
WEIGHT_TYPES: tuple[str, ...] = ("int8", "uint8")
QUANTIZE_ITERATIONS = 5
#: ``build-trt``: ``auto`` is TensorRT if importable, else TensorRT-RTX.
TRT_RUNTIME = "auto"
#: ``build-plugin``: CMake build folder, SM architectures and dtypes the kernel is compiled for, CMAKE_BUILD_TYPE,
#: parallel jobs (Triton compile processes and CMake).
PLUGIN_BUILD_DIR = "build/plugin"
PLUGIN_CUDA_ARCHITECTURES = "80;86;89;90;100;120"
PLUGIN_DTYPES = "fp16,fp32"
PLUGIN_BUILD_TYPE = "Release"
PLUGIN_JOBS = 2
BENCH_BATCHES: tuple[int, ...] = (1,)

#: Static int8 (``quantize --calibrate``): samples used, calibration method, output cosine to keep.
CALIBRATE_COUNT = 32
CALIBRATE_METHODS = ("percentile", "minmax", "entropy")
#: Static int8's Q/DQ flavours (``quantize --for``): ONNX Runtime's, or what TensorRT's builder accepts.
QDQ_FOR = ("onnxruntime", "tensorrt")
CALIBRATE_METHOD = "percentile"
TARGET_COSINE = 0.999
#: Fraction of the memory available that calibration plans for (the rest: the OS, other processes).
CALIBRATION_MEMORY_FRACTION = 0.7
#: Calibration samples the per-node SQNR ranking reads (one at a time).
SQNR_SAMPLES = 4

#: ``package --triton``: largest batch of a dynamically batched model, the dynamic batcher's wait for
#: more requests (microseconds), and instances per model.
TRITON_MAX_BATCH_SIZE = 8
TRITON_MAX_QUEUE_DELAY_US = 2000
TRITON_INSTANCES = 1
#: package --bench-report: the batch sizes whose throughput is within this fraction of the best become preferred.
TRITON_PREFERRED_WITHIN = 0.10
#: ``check``/``bench --backends triton``: the server's HTTP endpoint.
TRITON_URL = "http://localhost:8000"

#: ``visualize``: salient query points per attention when no ``--query`` is given.
VISUALIZE_POINTS = 3
