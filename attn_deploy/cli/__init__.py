"""The ``attn-deploy`` command line: one module per command; each parses, calls ``attn_deploy.api``, renders.

Importing this package registers every command on ``app`` (in the order ``--help`` lists them).
"""

from __future__ import annotations

from attn_deploy.cli import (  # noqa: F401  (imported to register their commands)
    export,
    demo,
    check,
    bench,
    build_plugin,
    fuse,
    quantize,
    build_trt,
    lower,
    zoo,
)
from attn_deploy.cli.app import app


def main() -> None:
    app(prog_name="attn-deploy")


__all__ = ["app", "main"]
