"""The layer registry: one file per layer family, every kind registered here.

Generic code (spec, graph, report, fcview, tests) loops over `REGISTRY`, so a
new layer kind is checked by every generic test automatically.

>>> sorted(REGISTRY)[:3]
['add', 'avgpool', 'batchnorm']
"""

from __future__ import annotations

from ..errors import LayerError, did_you_mean
from .activation import (
    Clip,
    Elu,
    Gelu,
    HardSigmoid,
    HardSwish,
    LeakyRelu,
    Mish,
    PRelu,
    Relu,
    Relu6,
    Selu,
    Sigmoid,
    Silu,
    Softplus,
    Tanh,
)
from .add import Add
from .base import Fusion, Layer
from .batchnorm import BatchNorm
from .binary import Div, Mul, Sub
from .channels import Shuffle, Slice
from .concat import Concat
from .conv import Conv
from .conv_transpose import ConvTranspose
from .dropout import Dropout, DropPath
from .flatten import Flatten
from .layernorm import LayerNorm
from .layerscale import LayerScale
from .linear import Linear
from .lrn import LRN
from .pad import Pad
from .pool import AvgPool, GlobalAvgPool, GlobalMaxPool, MaxPool
from .reduce import ReduceMax, ReduceMean
from .softmax import LogSoftmax, Softmax
from .upsample import Upsample

REGISTRY: dict[str, type[Layer]] = {
    cls.kind: cls
    for cls in (Conv, ConvTranspose, MaxPool, AvgPool, GlobalAvgPool, GlobalMaxPool, ReduceMean, ReduceMax, Upsample,
                Relu, Relu6, LeakyRelu, Sigmoid, Tanh, HardSwish, HardSigmoid, Silu, Gelu, Mish, Elu, Selu, Softplus,
                Clip, PRelu, Softmax, LogSoftmax, Flatten, Linear, BatchNorm, LayerNorm, LayerScale, LRN, Dropout,
                DropPath, Concat, Add, Mul, Sub, Div, Slice, Shuffle, Pad)
}


def make(kind: str, attrs: dict | None = None) -> Layer:
    """Build a validated layer from its kind and raw attributes.

    >>> make("maxpool", {"kernel": 2}).infer_shape([(6, 28, 28)])
    (6, 14, 14)
    """
    cls = REGISTRY.get(kind)
    if cls is None:
        raise LayerError(f"unknown layer kind '{kind}'", hint=did_you_mean(kind, REGISTRY))
    return cls.from_attrs(attrs or {})


__all__ = ["REGISTRY", "Fusion", "Layer", "make"]
