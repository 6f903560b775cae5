"""Ahead-of-time compilation of the Triton attention kernel into cubins the plugin embeds.

The kernel (``attn_deploy.ops.triton_kernel``) is compiled, without a GPU, once per *variant*:
(SM architecture, dtype, has_bias, dk block, dv block, aligned). Tile sizes come from
``tile_config`` for that architecture. The variants cover every head size:

- dk: one block of 32, 64, 128 or 256 (the smallest that holds dk), or 64-wide chunks above 256
  (32 because vision models' heads are often 32 wide: SAGAN C/8, DETR, Swin);
- dv: blocks of 64 or 128 columns (64 for float32), split across programs for any dv;
- ``aligned`` variants tell Triton that pointers are 16-byte aligned and that dk and dv are
  multiples of 16 (vectorised loads, as Triton's JIT specialises them); one unaligned variant per
  (arch, dtype, has_bias) takes every other shape.

Compilation runs in subprocesses (``python -m attn_deploy.trt_plugin.aot``) with ``TRITON_INTERPRET``
removed from their environment: in an interpreter-mode process (the CPU tests) Triton cannot
compile. Results are cached per kernel source and Triton version under the build folder.
``write_embedding`` then writes the C++ source that embeds the cubins (``.incbin``) with their table.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attn_deploy.artifact.fileio import write_bytes_atomic
from attn_deploy.errors import AttnDeployError, InputError

if TYPE_CHECKING:
    from attn_deploy.ops.triton_kernel import TileConfig

#: Architectures built by default (Ampere, Ampere GA10x, Ada, Hopper, Blackwell, Blackwell GeForce).
DEFAULT_ARCHS = (80, 86, 89, 90, 100, 120)
#: The CUDA release whose ptxas first knows each architecture.
_MIN_PTXAS = {75: (10, 0), 80: (11, 0), 86: (11, 1), 87: (11, 4), 89: (11, 8), 90: (12, 0), 100: (12, 8),
              101: (12, 8), 103: (12, 9), 110: (13, 0), 120: (12, 8), 121: (12, 9)}
#: Element dtypes of Q/K/V/bias/Out the kernel is compiled for, with their sizes in bytes.
DTYPES = {"fp16": 2, "bf16": 2, "fp32": 4}
DEFAULT_DTYPES = ("fp16", "fp32")
#: One-block dk sizes; larger dk runs in chunks of ``CHUNK_DK``.
DK_BLOCKS = (32, 64, 128, 256)
CHUNK_DK = 64
#: Arguments the aligned variants assume divisible by 16 (pointers: bytes; strides: elements).
_ALIGNED_ARGS = ("Q", "K", "V", "Out", "stride_qb", "stride_qh", "stride_qm", "stride_kb", "stride_kh", "stride_kn",
                 "stride_vb", "stride_vh", "stride_vn", "stride_ob", "stride_oh", "stride_om")
#: Bumped when the compile recipe (signature, attributes) changes, to invalidate caches.
_RECIPE = 1


@dataclass(frozen=True)
class Variant:
    """One compiled specialisation of the kernel."""

    arch: int
    dtype: str
    has_bias: bool
    block_dk: int
    one_dk_block: bool
    block_dv: int
    aligned: bool

    @property
    def representative_dk(self) -> int:
        """A head size this variant is chosen for (what ``tile_config`` and ``constexprs`` are asked about)."""
        return self.block_dk if self.one_dk_block else 2 * max(DK_BLOCKS)

    @property
    def key(self) -> str:
        dk = f"dk{self.block_dk}" if self.one_dk_block else f"dkc{self.block_dk}"
        return (f"sm{self.arch}_{self.dtype}_{'bias' if self.has_bias else 'nobias'}_{dk}_dv{self.block_dv}"
                f"_{'a16' if self.aligned else 'a1'}")

    def tile(self) -> TileConfig:
        """The ``TileConfig`` of this variant (block sizes, warps, stages) from ``tile_config``."""
        from attn_deploy.ops.triton_kernel import tile_config

        dk = self.representative_dk
        config = tile_config(dk, self.block_dv, itemsize=DTYPES[self.dtype], arch=self.arch)
        if config.block_dk != self.block_dk or config.block_dv != self.block_dv:
            raise AssertionError(f"tile_config({dk}, {self.block_dv}) gave blocks {config.block_dk}/{config.block_dv} for {self.key}")
        return config


@dataclass(frozen=True)
class CompiledVariant:
    """A variant's cubin on disk and what the launcher needs to know about it."""

    variant: Variant
    cubin: Path
    ptx: Path
    kernel_name: str
    block_m: int
    block_n: int
    num_warps: int
    num_stages: int
    shared_bytes: int

    def table_row(self) -> dict[str, Any]:
        return {**asdict(self.variant), "key": self.variant.key, "kernel_name": self.kernel_name,
                "block_m": self.block_m, "block_n": self.block_n, "num_warps": self.num_warps,
                "num_stages": self.num_stages, "shared_bytes": self.shared_bytes}


def parse_archs(text: str | Iterable[int]) -> list[int]:
    """``"80;86,90"`` or ``"sm_90"`` → ``[80, 86, 90]``; checked against what this Triton can compile."""
    if isinstance(text, str):
        items = [t.strip().lower().removeprefix("sm_").removeprefix("sm").removesuffix("a") for t in text.replace(",", ";").split(";")]
        if not all(t.isdigit() for t in items if t) or not any(items):
            raise InputError(f"--cuda-arch {text!r}: give SM numbers such as 80;86;89;90;100;120")
        archs = sorted({int(t) for t in items if t})
    else:
        archs = sorted(set(text))
    known = supported_archs()
    unknown = [a for a in archs if a not in known]
    if unknown:
        raise InputError(f"--cuda-arch {','.join(map(str, unknown))}: this Triton compiles for {','.join(map(str, known))} only")
    return archs


def supported_archs() -> list[int]:
    """Architectures Triton's bundled ptxas can compile for (Triton itself targets sm_80 and newer)."""
    import re

    from triton.backends.nvidia.compiler import get_ptxas_version

    found = []
    for arch, need in sorted(_MIN_PTXAS.items()):
        if arch < 80:
            continue
        match = re.search(r"release (\d+)\.(\d+)", get_ptxas_version(arch))
        if match and (int(match.group(1)), int(match.group(2))) >= need:
            found.append(arch)
    return found


def parse_dtypes(text: str | Iterable[str]) -> list[str]:
    items = [t.strip() for t in text.split(",")] if isinstance(text, str) else list(text)
    bad = [t for t in items if t not in DTYPES]
    if bad or not items:
        raise InputError(f"--dtypes {','.join(bad) or text!r}: choose from {','.join(DTYPES)}")
    return sorted(set(items), key=list(DTYPES).index)


def variants_for(archs: Sequence[int], dtypes: Sequence[str] = DEFAULT_DTYPES) -> list[Variant]:
    """Every variant the plugin needs for these architectures and dtypes (see the module docstring)."""
    out = []
    for arch in archs:
        for dtype in dtypes:
            dv_blocks = (64, 128) if DTYPES[dtype] <= 2 else (64,)
            for has_bias in (False, True):
                for dv in dv_blocks:
                    out += [Variant(arch, dtype, has_bias, dk, True, dv, True) for dk in DK_BLOCKS]
                    out.append(Variant(arch, dtype, has_bias, CHUNK_DK, False, dv, True))
                out.append(Variant(arch, dtype, has_bias, CHUNK_DK, False, 64, False))
    return out


def cache_fingerprint() -> str:
    """Changes with the kernel's source, Triton's version and this module's compile recipe."""
    import triton

    from attn_deploy.ops import triton_kernel

    digest = hashlib.sha256(Path(triton_kernel.__file__).read_bytes())
    digest.update(f"{triton.__version__}/{_RECIPE}".encode())
    return digest.hexdigest()[:16]


def compile_variants(
    variants: Sequence[Variant], cache_dir: Path, *, jobs: int = 2, progress: Callable[[str], None] | None = None,
) -> list[CompiledVariant]:
    """Compile the variants not yet in ``cache_dir/<fingerprint>/`` (``jobs`` processes); return all, in order.

    ``progress`` gets one line per variant (cached or compiled). Raises ``AttnDeployError`` with
    Triton's message when a compile fails.
    """
    folder = Path(cache_dir) / cache_fingerprint()
    folder.mkdir(parents=True, exist_ok=True)
    todo = [v for v in variants if _load_cached(folder, v) is None]
    done = len(variants) - len(todo)
    if progress and done:
        progress(f"{done} of {len(variants)} cubins cached in {folder}")
    if todo:
        groups = [todo[i::max(1, jobs)] for i in range(max(1, jobs))]
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(groups)) as pool:
            futures = [pool.submit(_run_worker, folder, group, progress) for group in groups if group]
            for future in futures:
                future.result()
    out = []
    for v in variants:
        compiled = _load_cached(folder, v)
        if compiled is None:
            raise AttnDeployError(f"compiling {v.key} reported success but {folder / v.key}.cubin is missing")
        out.append(compiled)
    return out


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH")]))
    return env


def _run_worker(folder: Path, group: Sequence[Variant], progress: Callable[[str], None] | None) -> None:
    cmd = [sys.executable, "-m", "attn_deploy.trt_plugin.aot", str(folder), *(json.dumps(asdict(v)) for v in group)]
    env = _clean_env()
    env.setdefault("TRITON_CACHE_DIR", str(folder / "triton-cache"))
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        for line in proc.stdout:
            if progress:
                progress(line.rstrip())
        err = proc.stderr.read()
    if proc.returncode != 0:
        tail = "\n".join(err.strip().splitlines()[-12:])
        raise AttnDeployError(f"Triton compile of the attention kernel failed (exit {proc.returncode}):\n{tail}")


def _load_cached(folder: Path, v: Variant) -> CompiledVariant | None:
    meta, cubin, ptx = (folder / f"{v.key}{ext}" for ext in (".json", ".cubin", ".ptx"))
    if not (meta.is_file() and cubin.is_file() and ptx.is_file()):
        return None
    m = json.loads(meta.read_text())
    return CompiledVariant(v, cubin, ptx, m["kernel_name"], m["block_m"], m["block_n"], m["num_warps"],
                           m["num_stages"], m["shared_bytes"])


def kernel_signature(v: Variant) -> tuple[dict[str, str], dict[str, Any], dict[tuple[int, ...], list[list[Any]]]]:
    """``triton.compile``'s signature, constexprs and attributes for a variant.

    The launch ABI (what ``fused_attention_launcher.cpp`` passes): Q, K, V, Bias, Out pointers,
    16 int64 strides, int32 heads, nq, nk, dk, dv, float32 qk_scale, then Triton's two scratch pointers.
    """
    from attn_deploy.ops.triton_kernel import jit_kernel

    names: list[str] = jit_kernel().arg_names
    constexprs = v.tile().constexprs(v.representative_dk, has_bias=v.has_bias)
    signature = {}
    for i, name in enumerate(names):
        if name in constexprs:
            signature[name] = "constexpr"
        elif i < 5:
            signature[name] = f"*{v.dtype}"
        elif name.startswith("stride_"):
            signature[name] = "i64"
        elif name == "qk_scale":
            signature[name] = "fp32"
        else:
            signature[name] = "i32"
    attrs: dict[tuple[int, ...], list[list[Any]]] = (
        {(names.index(n),): [["tt.divisibility", 16]] for n in _ALIGNED_ARGS} if v.aligned else {})
    return signature, constexprs, attrs


def _compile_one(folder: Path, v: Variant) -> None:
    """Compile one variant in this (non-interpreter) process and write its cubin, PTX and metadata."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.backends.nvidia.compiler import CUDABackend

    from attn_deploy.ops.triton_kernel import jit_kernel

    signature, constexprs, attrs = kernel_signature(v)
    config = v.tile()
    target = GPUTarget("cuda", v.arch, 32)
    options = CUDABackend(target).parse_options({"num_warps": config.num_warps, "num_stages": config.num_stages})
    source = triton.compiler.ASTSource(fn=jit_kernel(), signature=signature, constexprs=constexprs, attrs=attrs)
    compiled = triton.compile(source, target=target, options=options.__dict__)
    md = compiled.metadata
    if getattr(md, "global_scratch_size", 0) or getattr(md, "profile_scratch_size", 0):
        raise RuntimeError(f"{v.key}: the kernel asks for global scratch memory, which the plugin does not allocate")
    if getattr(md, "num_ctas", 1) != 1 or getattr(md, "launch_pdl", False) or getattr(md, "launch_cooperative_grid", False):
        raise RuntimeError(f"{v.key}: the kernel needs cluster/PDL/cooperative launch attributes the plugin's cuLaunchKernel lacks")
    write_bytes_atomic(folder / f"{v.key}.cubin", compiled.asm["cubin"])
    write_bytes_atomic(folder / f"{v.key}.ptx", compiled.asm["ptx"].encode())
    meta = {"kernel_name": md.name, "block_m": config.block_m, "block_n": config.block_n, "num_warps": md.num_warps,
            "num_stages": md.num_stages, "shared_bytes": md.shared}
    write_bytes_atomic(folder / f"{v.key}.json", json.dumps(meta).encode())  # written last: marks the entry complete


# ---------------------------------------------------------------------------------------------
# The C++ table


_DTYPE_CODES = {"fp32": 0, "fp16": 1, "bf16": 2}  # AttentionDType in fused_attention_kernel.h
GENERATED_SOURCE = "fused_attention_cubins.cpp"


def write_embedding(compiled: Sequence[CompiledVariant], out_dir: Path) -> Path:
    """Write ``out_dir/fused_attention_cubins.cpp``: each cubin embedded with ``.incbin``, and the table
    ``kCubinImages`` (``CubinImage`` in fused_attention_kernel.h). Rewritten only when it changes."""
    if not compiled:
        raise InputError("no cubins to embed: give at least one architecture and dtype")
    asm, rows = [], []
    for i, c in enumerate(compiled):
        path = str(c.cubin.resolve())
        if '"' in path or "\\" in path or "\n" in path:
            raise InputError(f"{path}: the build folder's path must not contain quotes or backslashes")
        asm.append(f'    ".globl attn_deploy_cubin_{i}\\n" ".hidden attn_deploy_cubin_{i}\\n" ".balign 128\\n" '
                   f'"attn_deploy_cubin_{i}:\\n" ".incbin \\"{path}\\"\\n"\n')
        v = c.variant
        rows.append(
            f"    {{{v.arch}, \"{c.kernel_name}\", \"{v.key}\", {_DTYPE_CODES[v.dtype]}, {int(v.has_bias)}, {c.block_m}, "
            f"{c.block_n}, {v.block_dk}, {int(v.one_dk_block)}, {v.block_dv}, {int(v.aligned)}, {c.num_warps}, "
            f"{c.num_stages}, {c.shared_bytes}, attn_deploy_cubin_{i}, {c.cubin.stat().st_size}u}},\n"
        )
    externs = "".join(f"extern \"C\" unsigned char const attn_deploy_cubin_{i}[];\n" for i in range(len(compiled)))
    text = (
        "// Generated by attn_deploy.trt_plugin.aot.write_embedding: the Triton attention kernel's cubins. Do not edit.\n"
        '#include "fused_attention_kernel.h"\n\n'
        '__asm__(".section .rodata.attn_deploy_cubins,\\"a\\"\\n"\n' + "".join(asm) + '    ".previous\\n");\n\n'
        + externs + "\nnamespace attn_deploy\n{\n"
        "CubinImage const kCubinImages[] = {\n" + "".join(rows) + "};\n"
        f"int32_t const kNbCubinImages = {len(compiled)};\n"
        "} // namespace attn_deploy\n"
    )
    out = Path(out_dir) / GENERATED_SOURCE
    if not out.is_file() or out.read_text() != text:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(out, text.encode())
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Worker: ``python -m attn_deploy.trt_plugin.aot CACHE_FOLDER VARIANT_JSON...`` (one line per variant done)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("TRITON_INTERPRET"):
        print("unset TRITON_INTERPRET: Triton cannot compile in interpreter mode", file=sys.stderr)
        return 2
    folder = Path(args[0])
    for raw in args[1:]:
        v = Variant(**json.loads(raw))
        _compile_one(folder, v)
        print(f"compiled {v.key}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
