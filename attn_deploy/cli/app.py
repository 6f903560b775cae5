"""The Typer application and its two consoles: results on stdout, messages on stderr."""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    help="Export, check and deploy attention-augmented vision models (ONNX Runtime, TensorRT).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
zoo_app = typer.Typer(help="Built-in models (use as zoo:NAME wherever MODEL is accepted).", no_args_is_help=True)
app.add_typer(zoo_app, name="zoo")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line, whatever the width
for _console in (out, err):  # CI logs are not terminals: do not squeeze tables into 80 columns
    if not _console.is_terminal:
        _console.width = max(_console.width, 120)
