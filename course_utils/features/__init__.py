"""Lesson 06: pretrained CNNs as feature extractors, top-K predictions and calibration.

A trained classifier is two parts: a feature extractor that turns an image into a vector, and a
final classifier (usually one ``nn.Linear``) that turns the vector into class scores. The vector
-- the *input* to that last layer -- is a compact description of the image that the network
learnt to make linearly separable, and it is useful far beyond the classes it was trained on.
One idea per file:

- ``extraction``: ``extract_features``, images [N, C, H, W] -> features [N, D], read with
  torchvision's ``create_feature_extractor`` at the classifier's input or at any named layer.
- ``similarity``: ``cosine_similarity_matrix``, ``nearest_neighbours``, ``plot_neighbours``.
- ``clustering``: ``cluster_features`` (k-means, DBSCAN) and ``cluster_scores`` (ARI, NMI).
- ``classifiers``: ``compare_classifiers``, a random forest and an SVM cross-validated on
  several feature sets ("raw pixels" vs "CNN features").
- ``topk``: ``topk_predictions`` and ``format_topk``.
- ``calibration``: ``expected_calibration_error`` and ``reliability_diagram``.
"""

from .calibration import *  # noqa: F403
from .calibration import __all__ as _calibration
from .classifiers import *  # noqa: F403
from .classifiers import __all__ as _classifiers
from .clustering import *  # noqa: F403
from .clustering import __all__ as _clustering
from .extraction import *  # noqa: F403
from .extraction import __all__ as _extraction
from .similarity import *  # noqa: F403
from .similarity import __all__ as _similarity
from .topk import *  # noqa: F403
from .topk import __all__ as _topk

__all__ = [
    *_extraction,
    *_similarity,
    *_clustering,
    *_classifiers,
    *_topk,
    *_calibration,
]
