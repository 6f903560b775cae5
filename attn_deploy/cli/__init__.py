"""The ``attn-deploy`` command line: one module per command; each parses, calls ``attn_deploy.api``, renders.

The table below registers every command on ``app``, in the order ``--help`` lists them.
"""

from __future__ import annotations

import os
import signal
import sys

from attn_deploy.cli import (
    bench,
    build_plugin,
    build_trt,
    check,
    demo,
    export,
    fuse,
    lower,
    package,
    quantize,
    visualize,
    zoo,
)
from attn_deploy.cli.app import app, zoo_app

app.command()(export.export)
app.command()(demo.demo)
app.command()(check.check)
app.command()(bench.bench)
app.command("build-plugin")(build_plugin.build_plugin)
app.command()(fuse.fuse)
app.command()(quantize.quantize)
app.command("build-trt")(build_trt.build_trt)
app.command()(lower.lower)
app.command("inspect")(lower.inspect_cmd)
app.command()(package.package)
app.command()(visualize.visualize)
zoo_app.command("list")(zoo.zoo_list)


def main() -> None:
    # torch makes its (here unused) compile-cache folder in $TMPDIR; the user's cache folder is where a cache belongs.
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(cache, "attn-deploy", "torchinductor"))
    # ONNX Runtime's telemetry writes a device identifier ($TMPDIR/.ses) on import; off unless the user sets it.
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # SIGTERM unwinds like Ctrl-C: temporary files and folders are removed, no half-written output stays.
    terminated: list[int] = []

    def on_sigterm(signum: int, frame: object) -> None:
        terminated.append(signum)
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        app(prog_name="attn-deploy")
    except Exception:
        # A SIGTERM raised inside a C extension's initialisation comes back as another error (pybind11's
        # "ImportError: initialization failed", seen in the kill test during quantize): still a termination.
        if terminated:
            sys.exit(128 + terminated[0])
        raise


__all__ = ["app", "main"]
