"""The C++/CUDA FusedAttention plugin: locating, building and modelling it.

The sources are in ``plugins/fused_attention/``; this package finds the toolchain, runs CMake
(``attn-deploy build-plugin``), builds the kernel as a PyTorch extension, and holds a NumPy model
of the kernel's tiling that the CPU-only tests check against the op.
"""
