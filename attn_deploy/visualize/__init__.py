"""``visualize``: attention maps of any attention node, on the input image, from PyTorch and ONNX Runtime.

``run.visualize`` is the entry point (``api.visualize``); ``grid`` maps query pixels to tokens and back,
``torch_maps`` / ``onnx_maps`` compute the rows asked for, ``render`` / ``html`` / ``write`` make the folder.
"""
