"""The Triton kernel compiled ahead of time, without a GPU: cubins per architecture, the C++ table that
embeds them, the launcher's choice of cubin, and the launch ABI the launcher assumes."""

from __future__ import annotations

import ctypes
import json
import re
import subprocess
from pathlib import Path

import pytest

from attn_deploy.trt_plugin import aot
from attn_deploy.trt_plugin.build import PluginBuildResult
from attn_deploy.trt_plugin.sources import DEFAULT_PLUGIN_DIR, KERNEL_CHECK_SOURCE, KERNEL_SOURCE
from attn_deploy.trt_plugin.toolchain import find_cuda_include
from tests.conftest import RunCli
from tests.trt_plugin.conftest import SMALL_VARIANTS


def _by_arch(build: PluginBuildResult, arch: int) -> aot.CompiledVariant:
    return next(c for c in build.cubins if c.variant.arch == arch)


def test_cubins_for_sm80_and_sm90_use_tensor_cores(kernel_build: PluginBuildResult) -> None:
    sm80, sm90 = _by_arch(kernel_build, 80), _by_arch(kernel_build, 90)
    ptx80, ptx90 = sm80.ptx.read_text(), sm90.ptx.read_text()
    assert "wgmma" in ptx90 and ".target sm_90a" in ptx90  # Hopper warpgroup MMA
    assert "mma.sync" in ptx80 and "wgmma" not in ptx80 and ".target sm_80" in ptx80
    for c in kernel_build.cubins:
        assert c.cubin.read_bytes()[:4] == b"\x7fELF" and c.kernel_name == "fused_attention_fwd"
        assert 0 < c.shared_bytes <= 227 * 1024 and c.num_warps in (4, 8)


def test_ptx_entry_is_the_launch_abi(kernel_build: PluginBuildResult) -> None:
    """fused_attention_launcher.cpp passes 5 pointers, 16 int64 strides, 5 int32 sizes, a float32 scale and
    Triton's two scratch pointers, in this order: the compiled entry must take exactly that."""
    compiled = _by_arch(kernel_build, 90)
    ptx = compiled.ptx.read_text()
    assert f".reqntid {compiled.num_warps * 32}" in ptx  # the launcher's block size
    assert ".extern .shared" in ptx  # shared memory is dynamic: the launcher passes shared_bytes
    entry = re.search(r"\.entry fused_attention_fwd\((.*?)\)", ptx, re.S)
    assert entry is not None
    types = re.findall(r"\.param \.(\w+)", entry.group(1))
    assert types == ["u64"] * 5 + ["u64"] * 16 + ["u32"] * 5 + ["f32"] + ["u64"] * 2, types


def test_cache_is_reused(kernel_build: PluginBuildResult, tmp_path: Path) -> None:
    lines: list[str] = []
    folder = kernel_build.cubins[0].cubin.parent.parent
    again = aot.compile_variants(list(SMALL_VARIANTS), folder, progress=lines.append)
    assert [c.cubin for c in again] == [c.cubin for c in kernel_build.cubins]
    assert lines == [f"{len(SMALL_VARIANTS)} of {len(SMALL_VARIANTS)} cubins cached in {folder / aot.cache_fingerprint()}"]


def test_kernel_library_table_read_with_ctypes(kernel_build: PluginBuildResult) -> None:
    lib = ctypes.CDLL(str(kernel_build.kernel_library))  # loads without a CUDA driver: libcuda is opened at launch
    lib.attn_deploy_fused_attention_cubin_table.restype = ctypes.c_char_p
    table = json.loads(lib.attn_deploy_fused_attention_cubin_table())
    assert len(table) == len(kernel_build.cubins)
    for row, c in zip(table, kernel_build.cubins, strict=True):
        want = c.table_row()
        assert {k: row[k] for k in want} == want
        assert row["elf"] is True and row["size"] == c.cubin.stat().st_size
    assert {row["arch"] for row in table} == {80, 90}


def _select(exe: Path, queries: list[tuple[int, str, int, int, int, int]], max_shared: dict[int, int] | None = None) -> list[str]:
    """The launcher's choice for each (arch, dtype, bias, dk, dv, aligned), given the device's shared memory per block."""
    text = "".join(" ".join(map(str, (*q, (max_shared or {}).get(q[0], 0)))) + "\n" for q in queries)
    proc = subprocess.run([str(exe), "select"], input=text, capture_output=True, text=True, check=True)
    return proc.stdout.split()


def test_cubin_choice_on_the_small_table(kernel_build: PluginBuildResult) -> None:
    a80, a90, fallback = (v.key for v in SMALL_VARIANTS)
    got = _select(kernel_build.kernel_check, [
        (90, "fp16", 0, 64, 64, 1), (90, "fp16", 0, 48, 32, 1),  # the one-block dk64 variant
        (86, "fp16", 0, 64, 64, 1), (89, "fp16", 0, 16, 16, 1),  # sm_80 cubins run on sm_86/89
        (80, "fp16", 0, 128, 64, 1),                               # dk 128 needs a variant sm_80 lacks
        (90, "fp16", 1, 40, 24, 0), (90, "fp16", 1, 2048, 2048, 1),  # the chunked fallback takes anything
        (90, "fp16", 0, 40, 24, 0),                                # no unaligned variant without bias
        (100, "fp16", 0, 64, 64, 1), (90, "fp32", 0, 64, 64, 1),  # sm_90a runs on sm_90 only; no fp32
    ])
    assert got == [a90, a90, a80, a80, "none", fallback, fallback, "none", "none", "none"]
    assert _select(kernel_build.kernel_check, [(90, "fp16", 0, 64, 64, 1)], {90: 1024}) == ["none"]  # too little shared memory


#: cudaDevAttrMaxSharedMemoryPerBlockOptin of each default architecture.
OPTIN_SHARED = {80: 166_912, 86: 101_376, 89: 101_376, 90: 232_448, 100: 232_448, 120: 101_376}


@pytest.fixture(scope="module")
def full_table_check(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kernel_check linked against the table of every default variant (stand-in images: selection never loads them)."""
    include = find_cuda_include()
    if include is None:
        pytest.skip("no cuda.h")
    tmp = tmp_path_factory.mktemp("full_table")
    fake = tmp / "fake.cubin"
    fake.write_bytes(b"\x7fELF stand-in")
    variants = aot.variants_for(aot.DEFAULT_ARCHS, ("fp16", "bf16", "fp32"))
    # float32 dk=256 needs about 120 KB of shared memory: more than sm_86/89/120 have (99 KB per block).
    compiled = [aot.CompiledVariant(v, fake, fake, "fused_attention_fwd", 64, 64, 4, 2,
                                    120_000 if (v.dtype, v.block_dk, v.one_dk_block) == ("fp32", 256, True) else 16_384)
                for v in variants]
    source = aot.write_embedding(compiled, tmp)
    exe = tmp / "kernel_check"
    subprocess.run(["g++", "-std=c++17", "-O1", "-I", str(DEFAULT_PLUGIN_DIR), "-isystem", str(include),
                    str(DEFAULT_PLUGIN_DIR / KERNEL_CHECK_SOURCE), str(DEFAULT_PLUGIN_DIR / KERNEL_SOURCE),
                    str(DEFAULT_PLUGIN_DIR / "cuda_driver.cpp"), str(source), "-ldl", "-o", str(exe)], check=True)
    return exe


def test_default_variants_cover_every_head_size(full_table_check: Path) -> None:
    """Every architecture x dtype x bias x (dk, dv), aligned or not, gets a cubin, and the tightest one that fits
    the device's shared memory."""
    sizes = [1, 16, 40, 64, 65, 128, 130, 256, 257, 2048]
    queries = [(arch, dtype, bias, dk, dv, int(dk % 16 == 0 and dv % 16 == 0))
               for arch in aot.DEFAULT_ARCHS
               for dtype in ("fp16", "bf16", "fp32") for bias in (0, 1) for dk in sizes for dv in sizes]
    for (arch, dtype, bias, dk, dv, aligned), key in zip(queries, _select(full_table_check, queries, OPTIN_SHARED), strict=True):
        assert key.startswith(f"sm{arch}_{dtype}_{'bias' if bias else 'nobias'}_"), (arch, dtype, dk, dv, key)
        block = re.search(r"_dk(c?)(\d+)_dv(\d+)_a(\d+)$", key)
        assert block is not None
        chunked, block_dk, block_dv = block.group(1) == "c", int(block.group(2)), int(block.group(3))
        assert (block.group(4) == "16") == bool(aligned)
        if aligned:
            fits = [b for b in aot.DK_BLOCKS if not (dtype == "fp32" and b == 256 and OPTIN_SHARED[arch] < 120_000)]
            tight_dk = next((b for b in fits if b >= dk), None)
            assert (chunked, block_dk) == ((True, aot.CHUNK_DK) if tight_dk is None else (False, tight_dk)), (dk, key)
            dv_blocks = (64, 128) if dtype != "fp32" else (64,)
            assert block_dv == next((b for b in dv_blocks if b >= dv), max(dv_blocks)), (dv, key)


def test_arch_and_dtype_options() -> None:
    assert aot.parse_archs("80;86, sm_90a") == [80, 86, 90]
    assert aot.parse_dtypes("fp32,fp16") == ["fp16", "fp32"]
    assert {80, 86, 89, 90} <= set(aot.supported_archs())
    variants = aot.variants_for([90], ["fp16"])
    assert len({v.key for v in variants}) == len(variants) == 2 * (len(aot.DK_BLOCKS) + 1) * 2 + 2


def test_build_plugin_rejects_unknown_architectures(run_cli: RunCli, tmp_path: Path) -> None:
    run_cli("build-plugin", "--kernel-only", "--cuda-arch", "70", "--build-dir", tmp_path / "b").assert_error("this Triton compiles for")
    run_cli("build-plugin", "--kernel-only", "--dtypes", "int8", "--build-dir", tmp_path / "b").assert_error("choose from fp16,bf16,fp32")
    assert not (tmp_path / "b").exists()


def test_kernel_check_without_a_driver(kernel_build: PluginBuildResult) -> None:
    """``kernel_check run`` is the GPU check; on a machine without the NVIDIA driver it says so (exit 2)."""
    if Path("/dev/nvidiactl").exists():
        pytest.skip("a GPU driver is present: benchmarks/gpu_check.py runs `kernel_check run`")
    proc = subprocess.run([str(kernel_build.kernel_check), "run"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "libcuda.so.1" in proc.stderr


def test_embedded_cubins_on_the_gpu(kernel_build: PluginBuildResult) -> None:
    """Where a GPU is present: the session's cubins run every case they cover within tolerance of float64."""
    if not Path("/dev/nvidiactl").exists():
        pytest.skip("needs an NVIDIA GPU and driver (benchmarks/gpu_check.py runs a full build's check)")
    proc = subprocess.run([str(kernel_build.kernel_check), "run"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and " 0 failure(s)" in proc.stdout, proc.stdout + proc.stderr
