"""Lesson 06: the one conversion the feature tools share -- tensors or array-likes to NumPy."""

from __future__ import annotations

import numpy as np
import torch


def as_numpy(x) -> np.ndarray:
    """A tensor (on any device) or array-like as a NumPy array."""
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
