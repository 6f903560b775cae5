"""The FusedAttention TensorRT plugin: the Triton kernel compiled ahead of time, and the C++ around it.

``aot`` compiles the kernel (``attn_deploy.ops.triton_kernel``) into cubins per GPU architecture and
writes the C++ table that embeds them; ``build`` runs CMake on ``plugins/fused_attention/``
(``attn-deploy build-plugin``); ``toolchain`` finds TensorRT, cuda.h and nvcc.
"""
