"""What a graph stage returns: the new Artifact and a typed summary of what the stage did."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

from attn_deploy.artifact.artifact import Artifact

S = TypeVar("S")


@dataclass(frozen=True)
class StageResult(Generic[S]):
    """``artifact`` is what the stage produced (not saved yet); ``summary`` says what it did and why."""

    artifact: Artifact
    summary: S
