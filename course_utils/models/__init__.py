"""Lesson 02: CNN architectures, from LeNet-5 to ConvNeXt, and the tools to look inside them.

One file per family, in historical order, each adding one idea:

- ``lenet``: ``LeNet5`` (1998), convolution + pooling + fully connected layers.
- ``alexnet``: ``AlexNet`` (2012), scale -- ReLU, dropout, large convolutions trained on GPUs
  (``TORCHVISION_ALEXNET_WIDTHS``: torchvision's variant).
- ``vgg``: ``VGGBlock``, ``VGG16`` (2014), depth from stacks of 3x3 convolutions; ``MiniVGG``, a
  small VGG-style network for 8x8 to 32x32 digits.
- ``inception``: ``InceptionModule`` (2014), width -- parallel 1x1 / 3x3 / 5x5 / pooling branches.
- ``resnet``: ``ResidualBlock``, ``BottleneckBlock``, ``ResNet`` (2015), skip connections;
  ``resnet18/34/50/101`` load torchvision's weights, ``resnet_small`` suits small digits.
- ``efficientnet``: ``SEBlock``, ``MBConvBlock``, ``EfficientNet``, ``EfficientNetB0``,
  ``efficientnet`` (2019), channel attention, depthwise separable inverted bottlenecks, compound
  scaling (``compound_scaling``, ``EFFICIENTNET_SCALING``); ``StochasticDepth``.
- ``convnext``: ``ConvNeXtBlock`` (2022), a ConvNet modernised with Transformer habits.
- ``regnet``: ``regnet_block_widths``, ``regnet_stages`` (2020), a design space instead of one
  network: stage widths and depths from a quantised linear rule (``RegNetStages``).

Every model checks its input with :func:`course_utils.checks.check_images` and says what it
expected;
``input_size`` is the [C, H, W] it was designed for. ``measure`` holds the tools:
``count_parameters``, ``count_by_type``, ``trace_shapes`` (+ ``format_table``),
``receptive_field`` and ``count_flops`` (multiply-accumulates).
"""

from .alexnet import *  # noqa: F403
from .alexnet import __all__ as _alexnet
from .convnext import *  # noqa: F403
from .convnext import __all__ as _convnext
from .efficientnet import *  # noqa: F403
from .efficientnet import __all__ as _efficientnet
from .inception import *  # noqa: F403
from .inception import __all__ as _inception
from .lenet import *  # noqa: F403
from .lenet import __all__ as _lenet
from .measure import *  # noqa: F403
from .measure import __all__ as _measure
from .regnet import *  # noqa: F403
from .regnet import __all__ as _regnet
from .resnet import *  # noqa: F403
from .resnet import __all__ as _resnet
from .vgg import *  # noqa: F403
from .vgg import __all__ as _vgg

__all__ = [
    *_lenet,
    *_alexnet,
    *_vgg,
    *_inception,
    *_resnet,
    *_efficientnet,
    *_convnext,
    *_regnet,
    *_measure,
]
