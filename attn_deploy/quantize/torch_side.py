"""``--torch``: a PyTorch dynamic-int8 model for CPU inference in PyTorch. It cannot be exported to ONNX.

``torch.ao.quantization.quantize_dynamic(m, {nn.Linear})`` skips 1×1 ``Conv2d`` projections (SAGAN
has no Linear), so they are first replaced by :class:`PointwiseLinear`, a ``Linear`` applied over
the channel axis, which computes the same thing. Neither ONNX exporter handles dynamically
quantized modules, which is why ``quantize`` quantizes the ONNX graph instead.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

NOT_EXPORTABLE = (
    "the PyTorch int8 model is for PyTorch CPU inference only: dynamically quantized modules cannot be "
    "exported to ONNX by either exporter (use the .onnx written by quantize instead)"
)


class PointwiseLinear(nn.Module):
    """A 1×1 convolution as ``nn.Linear`` over channels: ``[B, C, H, W] -> [B, Cout, H, W]``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.linear = nn.Linear(conv.in_channels, conv.out_channels, bias=conv.bias is not None)
        with torch.no_grad():
            self.linear.weight.copy_(conv.weight.reshape(conv.out_channels, conv.in_channels))
            if conv.bias is not None:
                self.linear.bias.copy_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.linear(x.movedim(1, -1)).movedim(-1, 1)
        return out


def _is_pointwise(m: nn.Module) -> bool:
    return (
        isinstance(m, nn.Conv2d)
        and m.kernel_size == (1, 1)
        and m.stride == (1, 1)
        and m.groups == 1
        and m.dilation == (1, 1)
        and m.padding in ((0, 0), "valid")
    )


def convs_to_linear(module: nn.Module) -> int:
    """Replace every 1×1 Conv2d (in place); returns how many."""
    count = 0
    for name, child in list(module.named_children()):
        if _is_pointwise(child):
            setattr(module, name, PointwiseLinear(child))  # type: ignore[arg-type]
            count += 1
        else:
            count += convs_to_linear(child)
    return count


def quantize_torch(module: nn.Module) -> tuple[nn.Module, int, int]:
    """(int8 module, 1×1 convs turned into Linear, Linear layers quantized)."""
    import copy

    model = copy.deepcopy(module).eval()
    converted = convs_to_linear(model)
    linears = sum(isinstance(m, nn.Linear) for m in model.modules())
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which is not a dependency here.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)  # type: ignore[no-untyped-call]
    return quantized, converted, linears


def save_torch_quantized(module: nn.Module, path: Path) -> dict[str, Any]:
    """Write the int8 module with ``torch.save`` (a whole-module pickle) and describe it."""
    from attn_deploy.artifact.fileio import atomic_path

    quantized, converted, linears = quantize_torch(module)
    with atomic_path(path) as tmp:
        torch.save(quantized, tmp)
    return {
        "path": str(path),
        "convs_to_linear": converted,
        "linear_quantized": linears,
        "format": "torch.save whole module (load with torch.load(..., weights_only=False) after importing attn_deploy)",
        "note": NOT_EXPORTABLE,
    }
