"""attn-deploy: ship attention-augmented vision models to ONNX Runtime and TensorRT.

Pipeline, one sub-package per stage: ``export`` (torch -> ONNX with
``attn_deploy::FusedAttention``), ``check`` (parity), and the shared op contract in ``ops``.
"""

__version__ = "0.1.0"
