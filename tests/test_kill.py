"""Killed at any point (SIGKILL or SIGTERM), ``export``, ``quantize`` and ``build-trt`` leave whole
pairs: every model beside the manifest that describes it (its sha256), every engine beside the
build report that describes it (``engine_sha256``), and nothing in $TMPDIR (#17 kill test).

Each child gets a fresh $TMPDIR and an output folder that already holds an older pair of every
output, so a kill during the write must leave the old pair or the new one, never a mix. Kill times
are drawn (seeded) over the length of a whole run of the command, measured first. All children run
two at a time in one pool, the three commands mixed, so both cores stay busy; ``quantize`` and
``build-trt`` read a model built in code (no PyTorch export in this process).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from attn_deploy.artifact.artifact import Artifact
from tests.attention_graphs import encoder_block

REPO = Path(__file__).resolve().parents[1]
#: 20 kill points per command (half SIGKILL, half SIGTERM), at seeded uniform times over one whole run.
KILLS_PER_SIGNAL = {"export": 10, "quantize": 10, "build-trt": 10}


def _has_tensorrt_rtx() -> bool:
    try:
        import tensorrt_rtx  # noqa: F401
    except ImportError:
        return False
    return True


COMMANDS = ("export", "quantize", "build-trt") if _has_tensorrt_rtx() else ("export", "quantize")


def _outputs(command: str) -> dict[str, str]:
    """Each output of ``command`` (a model or an engine) -> its manifest or report, by file name."""
    return {
        "export": {"m.onnx": "m.json"},
        "quantize": {"q.onnx": "q.json"},
        "build-trt": {"e.engine": "e.engine.json", "l.onnx": "l.json"},
    }[command]


def _recorded_sha256(description: Path) -> object:
    data = json.loads(description.read_text())
    return data["engine_sha256"] if description.name.endswith(".engine.json") else data["output_sha256"]


def _pairs_are_whole(folder: Path, command: str, after: signal.Signals) -> None:
    names = [p.name for p in folder.iterdir()]
    visible = sorted(n for n in names if not n.startswith("."))
    pairs = _outputs(command)
    # Each output is there with its description, or (never written, nothing older) neither is.
    present = [o for o in pairs if o in visible]
    assert visible == sorted([*present, *(pairs[o] for o in present)]), names
    for output in present:
        recorded = _recorded_sha256(folder / pairs[output])
        assert recorded == hashlib.sha256((folder / output).read_bytes()).hexdigest(), f"{output}: described by {pairs[output]} of another one"
    if after == signal.SIGTERM:  # SIGTERM unwinds: not even a hidden temporary file stays
        assert visible == sorted(names), names


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``src.onnx`` (what quantize and build-trt read) and, in ``old/``, an older pair of every output."""
    folder = tmp_path_factory.mktemp("kill-sources")
    Artifact.describe(encoder_block(), source="kill test", exporter="test").save(folder / "src.onnx")
    old = folder / "old"
    Artifact.describe(encoder_block(8, 16), source="kill test, older", exporter="test").save(old / "old.onnx")
    for command in COMMANDS:
        for output, description in _outputs(command).items():
            if output.endswith(".onnx"):
                shutil.copy(old / "old.onnx", old / output)
                shutil.copy(old / "old.json", old / description)
            else:
                engine = b"an older engine"
                (old / output).write_bytes(engine)
                (old / description).write_text(json.dumps({"engine_sha256": hashlib.sha256(engine).hexdigest()}))
    return folder


@dataclass(frozen=True)
class Child:
    command: str
    cmd: list[str]
    env: dict[str, str]
    out: Path
    scratch: Path
    sig: signal.Signals = signal.SIGTERM
    delay: float | None = None  # None: run to the end


@dataclass(frozen=True)
class Ran:
    child: Child
    code: int
    seconds: float
    stderr: str


def _child(tmp: Path, sources: Path, command: str, index: int, sig: signal.Signals = signal.SIGTERM, delay: float | None = None) -> Child:
    out, scratch = tmp / f"{command}-{index}" / "out", tmp / f"{command}-{index}" / "tmp"
    out.mkdir(parents=True)
    scratch.mkdir()
    for output, description in _outputs(command).items():
        for name in (output, description):
            shutil.copy(sources / "old" / name, out / name)
    cli = [sys.executable, "-m", "attn_deploy.cli"]
    src = str(sources / "src.onnx")
    cmd = {
        "export": [*cli, "export", "zoo:sagan-256", "--input-shape", "1x256x8x8", "-o", str(out / "m.onnx")],
        "quantize": [*cli, "quantize", src, "-o", str(out / "q.onnx"), "--iterations", "0"],
        "build-trt": [*cli, "build-trt", src, "-o", str(out / "e.engine"), "--save-onnx", str(out / "l.onnx"), "--runtime", "tensorrt-rtx"],
    }[command]
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)  # as a user runs it
    return Child(command, cmd, env, out, scratch, sig, delay)


def _run(child: Child) -> Ran:
    started = time.monotonic()
    proc = subprocess.Popen(child.cmd, env=child.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if child.delay is not None:
        try:
            proc.wait(timeout=child.delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(child.sig)
    _, stderr = proc.communicate(timeout=300)
    return Ran(child, proc.returncode, time.monotonic() - started, stderr)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, sources: Path) -> dict[str, list[Ran]]:
    """Per command: one whole run, then the killed ones (``KILLS_PER_SIGNAL[command]`` per signal)."""
    tmp = tmp_path_factory.mktemp("kills")
    done: dict[str, list[Ran]] = {c: [] for c in COMMANDS}
    with ThreadPoolExecutor(max_workers=2) as pool:
        # The whole runs first (export, the longest, first of all); each command's kills are queued
        # as soon as its length is known, longest first, so the two workers finish close together.
        whole = {pool.submit(_run, _child(tmp, sources, c, 0)): c for c in COMMANDS}
        killed: list[Future[Ran]] = []
        for future in as_completed(whole):
            ran = future.result()
            done[ran.child.command].append(ran)
            rng = random.Random(f"{ran.child.command}-17")
            plan = [(sig, rng.uniform(0.0, ran.seconds)) for sig in (signal.SIGKILL, signal.SIGTERM) for _ in range(KILLS_PER_SIGNAL[ran.child.command])]
            children = [_child(tmp, sources, ran.child.command, i + 1, sig, delay) for i, (sig, delay) in enumerate(plan)]
            killed += [pool.submit(_run, c) for c in sorted(children, key=lambda c: -(c.delay or 0.0))]
        for future in killed:
            ran = future.result()
            done[ran.child.command].append(ran)
    return done


@pytest.mark.parametrize("command", COMMANDS)
def test_kills_leave_whole_pairs_and_no_temporary_files(sources: Path, runs: dict[str, list[Ran]], command: str) -> None:
    whole, *killed = runs[command]
    assert whole.code == 0, whole.stderr
    _pairs_are_whole(whole.child.out, command, signal.SIGTERM)
    for output in _outputs(command):  # all written anew
        assert (whole.child.out / output).read_bytes() != (sources / "old" / output).read_bytes(), output
    assert not list(whole.child.scratch.iterdir())
    assert len(killed) == 2 * KILLS_PER_SIGNAL[command]
    for ran in killed:
        sig, code, stderr = ran.child.sig, ran.code, ran.stderr
        where = f"{sig.name} at {ran.child.delay:.2f} s of {whole.seconds:.2f} s (exit {code}; stderr {stderr.strip()[-300:]!r})"
        if code == 1 and sig == signal.SIGTERM:
            # Seen once in CI-like runs: the interruption surfaced as a library's own error. Then it must
            # be reported as one error line, and what it leaves must still be whole (checked below).
            assert stderr.strip().splitlines()[-1:] and stderr.strip().splitlines()[-1].startswith("error:"), where
            code = 128 + sig
        # SIGABRT: a SIGTERM landing while ONNX Runtime's threads wind down can abort the process (seen
        # near the end of quantize); what it leaves must still be whole, which is what is checked below.
        assert code in (0, -sig, 128 + sig, -signal.SIGABRT), where
        _pairs_are_whole(ran.child.out, command, sig)
        assert not list(ran.child.scratch.iterdir()), f"{where}: left {sorted(p.name for p in ran.child.scratch.iterdir())} in $TMPDIR"


def test_sigterm_between_the_renames_of_a_pair_waits_for_both(tmp_path: Path, sources: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window no random kill is likely to hit: SIGTERM right after the manifest's rename. The
    model's rename still happens; then the CLI's handler runs (``sys.exit``)."""
    for name in ("m.onnx", "m.json"):
        shutil.copy(sources / "old" / name, tmp_path / name)
    real_replace = os.replace

    def replace_then_terminate(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        if str(dst).endswith(".json"):
            signal.raise_signal(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        monkeypatch.setattr(os, "replace", replace_then_terminate)
        with pytest.raises(SystemExit) as exited:
            Artifact.describe(encoder_block(16, 8), source="kill test", exporter="test").save(tmp_path / "m.onnx")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 128 + signal.SIGTERM
    _pairs_are_whole(tmp_path, "export", signal.SIGTERM)
    assert (tmp_path / "m.onnx").read_bytes() != (sources / "old" / "m.onnx").read_bytes()


def test_sigterm_while_tensorrt_initialises_is_not_a_missing_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the kill test: the handler's ``SystemExit`` raised while TensorRT-RTX's extension
    initialises comes back as ``ImportError: initialization failed`` (pybind11); build-trt then said
    "no usable TensorRT, install one" and exited 2. The interruption must go on as itself."""
    from attn_deploy.engine import backend

    def interrupted_import(name: str) -> None:
        try:
            raise SystemExit(128 + signal.SIGTERM)
        except SystemExit as e:
            raise ImportError("initialization failed") from e

    monkeypatch.setattr(backend.importlib, "import_module", interrupted_import)
    with pytest.raises(SystemExit) as exited:
        backend._try_import("tensorrt-rtx")
    assert exited.value.code == 128 + signal.SIGTERM

    def broken_import(name: str) -> None:
        raise ImportError("libcudart.so.13: cannot open shared object file")

    monkeypatch.setattr(backend.importlib, "import_module", broken_import)
    assert backend._try_import("tensorrt-rtx") == (None, "ImportError: libcudart.so.13: cannot open shared object file")


def test_sigterm_as_a_temporary_file_is_created_leaves_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window the random kills hit once in CI (a hidden ``.e.engine.json.*.tmp`` left behind):
    SIGTERM right after ``mkstemp`` made the file, before the clean-up knew of it."""
    from attn_deploy.artifact.fileio import atomic_paths

    real_mkstemp = tempfile.mkstemp

    def mkstemp_then_terminate(*args: Any, **kwargs: Any) -> tuple[int, str]:
        made = real_mkstemp(*args, **kwargs)
        signal.raise_signal(signal.SIGTERM)
        return made

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        monkeypatch.setattr(tempfile, "mkstemp", mkstemp_then_terminate)
        with pytest.raises(SystemExit) as exited, atomic_paths(tmp_path / "e.engine.json", tmp_path / "e.engine"):
            pytest.fail("the block must not run: the SIGTERM came first")
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert exited.value.code == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_sigterm_inside_a_c_extensions_import_exits_as_a_termination() -> None:
    """The CLI's SIGTERM handler raises ``SystemExit``; raised while a C extension initialises, pybind11
    turns it into ``ImportError: initialization failed`` (seen once as quantize imported ONNX Runtime).
    That must still exit 143, not as a crash with exit 1."""
    script = (
        "import signal, attn_deploy.cli as cli\n"
        "def importing(prog_name):\n"
        "    try:\n"
        "        signal.raise_signal(signal.SIGTERM)\n"
        "    except SystemExit as e:\n"
        "        raise ImportError('initialization failed') from e\n"
        "cli.app = importing\n"
        "cli.main()\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
