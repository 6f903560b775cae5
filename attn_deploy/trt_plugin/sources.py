"""Where the plugin's C++/CUDA sources live (``plugins/fused_attention/`` in the repository)."""

from __future__ import annotations

from pathlib import Path

from attn_deploy.errors import InputError

#: The source tree of a checkout; an installed wheel has no plugins/ folder, hence ``--source``.
DEFAULT_PLUGIN_DIR = Path(__file__).resolve().parents[2] / "plugins" / "fused_attention"
KERNEL_HEADER = "fused_attention_kernel.h"
KERNEL_SOURCE = "fused_attention_launcher.cpp"
PLUGIN_SOURCE = "fused_attention_plugin.cpp"
KERNEL_CHECK_SOURCE = "checks/kernel_check.cpp"


def plugin_dir(source: Path | None = None) -> Path:
    """The plugin source folder (``source`` or the checkout's), checked to hold the kernel and CMakeLists."""
    folder = Path(source) if source is not None else DEFAULT_PLUGIN_DIR
    missing = [name for name in ("CMakeLists.txt", KERNEL_HEADER, KERNEL_SOURCE) if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"{folder} is not the FusedAttention plugin source (missing {', '.join(missing)}): "
            "pass --source PATH/TO/attn-deploy/plugins/fused_attention"
        )
    return folder
