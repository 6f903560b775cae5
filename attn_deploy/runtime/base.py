"""The runner interface: a context manager that maps named numpy inputs to named numpy outputs.

As with Polygraphy's runners, making a runner is cheap and checks only what it can without loading
anything; ``activate`` (``__enter__``) loads the model; ``close`` (``__exit__``) frees it. ``infer`` on
a runner that is not active activates it first, so a runner also works outside a ``with`` block.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Protocol, Self

import numpy as np

Feeds = dict[str, np.ndarray]


class Runner(Protocol):
    """A backend runner: ``with runner: runner.infer(feeds)``."""

    name: str

    @property
    def input_names(self) -> list[str]: ...

    @property
    def output_names(self) -> list[str]: ...

    def infer(self, feeds: Feeds) -> Feeds: ...

    def activate(self) -> None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None: ...


class RunnerBase:
    """The lifecycle every runner shares; subclasses implement ``_activate`` and ``_close``."""

    name: str
    _active: bool = False

    def _activate(self) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        """Free what ``_activate`` loaded (nothing by default)."""

    @property
    def is_active(self) -> bool:
        return self._active

    def activate(self) -> None:
        """Load the model (idempotent)."""
        if not self._active:
            self._activate()
            self._active = True

    def close(self) -> None:
        """Free the model (idempotent); the runner can be activated again."""
        if self._active:
            self._active = False
            self._close()

    def __enter__(self) -> Self:
        self.activate()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class LoadedNamesRunner(RunnerBase):
    """A runner whose I/O names are known once loaded: ``_activate`` sets ``_inputs`` and ``_outputs``."""

    _inputs: list[str]
    _outputs: list[str]

    @property
    def input_names(self) -> list[str]:
        self.activate()
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        self.activate()
        return list(self._outputs)


class PolygraphyRunner(LoadedNamesRunner):
    """A runner around one of Polygraphy's (``_runner``); ``_activate`` sets it and the I/O names."""

    _runner: Any = None

    def _close(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None and runner.is_active:
            runner.deactivate()

    def _infer(self, feeds: Feeds, **kwargs: Any) -> Feeds:
        """Polygraphy's ``infer`` on contiguous inputs; the outputs as arrays, in graph order."""
        self.activate()
        outputs = self._runner.infer({k: np.ascontiguousarray(v) for k, v in feeds.items()}, **kwargs)
        return {name: np.asarray(outputs[name]) for name in self._outputs}
