"""Attention rollout: the product of (0.5·A + 0.5·I) over layers, and its size limit."""

from __future__ import annotations

import numpy as np
import pytest

from attn_deploy.errors import InputError
from attn_deploy.visualize.rollout import MAX_TOKENS, check_size, rollout


def test_rollout_of_uniform_layers() -> None:
    n = 4
    uniform = np.full((2, n, n), 1.0 / n)  # two heads, every query attends everywhere
    one = rollout([uniform])
    np.testing.assert_allclose(one, 0.5 * np.full((n, n), 1.0 / n) + 0.5 * np.eye(n))
    two = rollout([uniform, uniform])
    np.testing.assert_allclose(two, one @ one)
    np.testing.assert_allclose(two.sum(axis=-1), 1.0)


def test_rollout_refuses_large_maps() -> None:
    check_size("fine", MAX_TOKENS)
    with pytest.raises(InputError, match="--rollout needs full N×N maps and big has N=16800"):
        check_size("big", 16800)
