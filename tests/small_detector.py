"""The zoo's Faster R-CNN entries at a smaller resize: same graph, a fraction of the CPU time."""

from __future__ import annotations

from attn_deploy.export.loading import LoadedModel

#: (min_size, max_size) of the detector's own resize, and an input of that size.
RESIZE = (320, 480)
INPUT_SHAPE = (1, 3, 320, 426)


def resized(loaded: LoadedModel, size: tuple[int, int] = RESIZE) -> LoadedModel:
    """``loaded`` (a zoo detector) resizing images to ``size`` instead of its 800 px default."""
    transform = loaded.module.detector.transform
    transform.min_size, transform.max_size = (size[0],), size[1]
    return loaded
