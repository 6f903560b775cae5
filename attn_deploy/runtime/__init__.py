"""Backends behind one interface: named numpy inputs in, named numpy outputs out (runners are context managers)."""

from attn_deploy.runtime.base import Runner, RunnerBase
from attn_deploy.runtime.ort_runner import OrtRunner
from attn_deploy.runtime.torch_runner import TorchRunner

__all__ = ["OrtRunner", "Runner", "RunnerBase", "TorchRunner"]
