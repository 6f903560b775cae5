"""The one place library errors become exit codes: one ``error:`` line on stderr."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

import typer
from rich.markup import escape

from attn_deploy.cli.app import err
from attn_deploy.errors import AttnDeployError

P = ParamSpec("P")
R = TypeVar("R")


def one_line_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn AttnDeployError into ``error: ...`` on stderr and its exit code (2 for input errors)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except AttnDeployError as e:
            err.print(f"[red]error:[/red] {escape(str(e))}", highlight=False, soft_wrap=True)
            raise typer.Exit(e.exit_code) from None

    return wrapper
