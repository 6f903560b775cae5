"""``captured_output``: what third-party code prints during a call, kept off the user's terminal.

PyTorch's exporters print FX graphs and warnings (hundreds of KB for a detector) before they fail,
and TensorRT-RTX's Myelin prints its exceptions from native code. Both Python's streams and file
descriptors 1 and 2 are redirected, so writes from C++ are caught as well as ``print``/logging.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def _descriptor(fd: int, lines: list[str]) -> Iterator[None]:
    try:
        saved = os.dup(fd)
    except OSError:  # no such descriptor (an embedding host closed it): nothing to capture there
        yield
        return
    with tempfile.TemporaryFile() as sink:  # unlinked at once: nothing is left in $TMPDIR
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            os.dup2(saved, fd)
            os.close(saved)
            sink.seek(0)
            lines.extend(sink.read().decode(errors="replace").splitlines())


@contextlib.contextmanager
def captured_output(*, stdout: bool = True) -> Iterator[list[str]]:
    """Capture stderr (and stdout unless ``stdout=False``) during the block; the list yielded holds
    the non-empty lines once the block has ended, exception or not."""
    lines: list[str] = []
    streams = [sys.stderr, *([sys.stdout] if stdout else [])]
    for stream in streams:
        stream.flush()
    python_err, python_out = io.StringIO(), io.StringIO()

    def collect() -> None:  # runs last, after the descriptors have given back what they caught
        lines.extend(python_err.getvalue().splitlines() + python_out.getvalue().splitlines())
        lines[:] = [line for line in lines if line.strip()]

    with contextlib.ExitStack() as stack:
        stack.callback(collect)
        stack.enter_context(_descriptor(2, lines))
        if stdout:
            stack.enter_context(_descriptor(1, lines))
            stack.enter_context(contextlib.redirect_stdout(python_out))
        stack.enter_context(contextlib.redirect_stderr(python_err))
        yield lines
