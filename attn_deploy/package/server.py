"""Start the ``tritonserver`` that the ``nvidia-pytriton`` wheel ships, on a free localhost port.

The wheel carries the server, its libraries and the Python backend (no onnxruntime or tensorrt
backend), with one backend stub per Python version. ``serve`` lays out a backend folder with the
stub of this Python, starts the server with HTTP only, loads the models asked for, waits until it
is ready, and stops it (and removes its folder) on exit. For tests and ``bench`` on a CPU machine;
production runs the NGC container (see the repository's README).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from attn_deploy.errors import AttnDeployError, InputError
from attn_deploy.package.python_model import python_version


@dataclass(frozen=True)
class ServerFiles:
    """Where the wheel keeps the server binary, its libraries, the Python backend and this Python's stub."""

    binary: Path
    libraries: Path
    python_backend: Path
    stub: Path


@dataclass(frozen=True)
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def server_files() -> ServerFiles:
    """The server's files; InputError saying how to install them when they are not there."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise InputError("tritonserver is not installed: pip install --no-deps nvidia-pytriton (make install does)")
    root = Path(spec.origin).parent / "tritonserver"
    files = ServerFiles(
        binary=root / "bin" / "tritonserver",
        libraries=Path(spec.origin).parent.parent / "nvidia_pytriton.libs",
        python_backend=root / "backends" / "python",
        stub=root / "python_backend_stubs" / python_version() / "triton_python_backend_stub",
    )
    for path in (files.binary, files.libraries, files.python_backend, files.stub):
        if not path.exists():
            raise InputError(f"{path} is missing from the nvidia-pytriton install; reinstall it (pip install --no-deps --force-reinstall nvidia-pytriton)")
    return files


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _backends(folder: Path, files: ServerFiles) -> Path:
    """A backend folder holding the wheel's Python backend and this Python's stub."""
    python = folder / "backends" / "python"
    shutil.copytree(files.python_backend, python, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(files.stub, python / "triton_python_backend_stub")
    return folder / "backends"


def _remove_python_env_folders(since: float) -> None:
    """Triton's Python backend makes ``/tmp/python_env_*`` (a path fixed in its binary, not ``$TMPDIR``)
    and leaves it when the server stops before finalising its backends (clients still connected).
    Remove those made since ``since``: empty folders of this user only, so a folder holding an unpacked
    environment is never touched (another server of this user started meanwhile could lose its empty one)."""
    for path in Path("/tmp").glob("python_env_*"):
        try:
            info = path.lstat()
            if path.is_dir() and not path.is_symlink() and info.st_uid == os.getuid() and info.st_mtime >= since - 1 and not any(path.iterdir()):
                path.rmdir()
        except OSError:
            continue


@contextlib.contextmanager
def serve(repository: str | os.PathLike[str], models: Sequence[str], timeout: float = 180.0) -> Iterator[Server]:
    """A running server for ``models`` of ``repository`` at ``Server.url``; stopped on exit."""
    files = server_files()
    folder = Path(tempfile.mkdtemp(prefix="attn-deploy-triton."))
    process: subprocess.Popen[bytes] | None = None
    started = time.time()
    try:
        port = free_port()
        command = [
            str(files.binary), f"--model-repository={Path(repository).resolve()}", f"--backend-directory={_backends(folder, files)}",
            "--http-address=127.0.0.1", f"--http-port={port}", "--allow-grpc=false", "--allow-metrics=false", "--exit-timeout-secs=5", "--model-control-mode=explicit",
            *(f"--load-model={m}" for m in models),
        ]
        scratch = folder / "tmp"  # its $TMPDIR: the server writes a .ses file there and leaves it
        scratch.mkdir()
        env = {**os.environ, "TMPDIR": str(scratch),
               "LD_LIBRARY_PATH": os.pathsep.join(filter(None, [str(files.libraries), os.environ.get("LD_LIBRARY_PATH")]))}
        log = folder / "server.log"
        with open(log, "wb") as sink:
            process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
        server = Server(f"http://127.0.0.1:{port}", process, log)
        deadline = time.monotonic() + timeout
        while not _ready(server.url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AttnDeployError(f"tritonserver did not become ready (exit {process.poll()}): {server.log_tail(5)}")
            time.sleep(0.5)
        yield server
    finally:
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(folder, ignore_errors=True)
        if process is not None:
            _remove_python_env_folders(since=started)
