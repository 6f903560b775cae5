"""The ``package`` stage: a Triton Inference Server model repository for the artifacts.

``models`` says which Triton models the artifacts make (an ``onnxruntime`` model per .onnx, a
``tensorrt`` plan per engine, a ``python`` model per .onnx with ``--python-backend``, an ensemble with
the image preprocessing (``preprocess``) in front where the manifest records it); ``config`` builds
and validates each ``config.pbtxt`` with Triton's own schema, ``ensemble`` checks the chains; ``python_model`` writes the
Python backend's ``model.py``; ``repository`` writes the folder atomically; ``server`` starts the
``tritonserver`` that ``nvidia-pytriton`` ships (tests and ``bench``).
"""

from attn_deploy.package.models import ModelSpec, PackageOptions
from attn_deploy.package.repository import PackageResult, package_repository

__all__ = ["ModelSpec", "PackageOptions", "PackageResult", "package_repository"]
