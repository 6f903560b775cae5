"""The one place library errors become exit codes: one ``error:`` line on stderr."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import ParamSpec, TypeVar

import typer
from rich.markup import escape

from attn_deploy.artifact.fileio import ensure_writable
from attn_deploy.cli.app import err
from attn_deploy.errors import AttnDeployError

P = ParamSpec("P")
R = TypeVar("R")


#: Each command's output-file parameters and the option that sets them: checked before any work.
OUTPUT_OPTIONS = {
    "output": "-o", "report": "--report", "report_file": "--report", "markdown": "--markdown",
    "junit": "--junit", "plot": "--plot", "save_onnx": "--save-onnx",
}


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn AttnDeployError into ``error: ...`` on stderr and its exit code (2 for input errors).

    Output files named on the command line are checked first, so an unwritable one costs no work.
    """

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            for name, option in OUTPUT_OPTIONS.items():
                value = kwargs.get(name)
                if isinstance(value, Path):
                    ensure_writable(value, option)
            return fn(*args, **kwargs)
        except AttnDeployError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper
