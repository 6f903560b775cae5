"""Latency and memory of the same model across backends (``attn-deploy bench``).

Kept import-light: ``memory`` is used by benchmark child processes that must not load torch.
"""
