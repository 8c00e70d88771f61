"""What a layer kind tells the compiler: its computation as data, never a name to
dispatch on. Each layer's `lower(in_shapes, params)` returns one of these values;
the compiler maps the *mechanism* (a window, a pointwise function, a channel
reduction, ...) to native code, so a new kind that reuses a mechanism needs no
compiler change.

Pointwise functions are written once, against `m`, the vector math of whatever
emitter evaluates them (a conv epilogue, a standalone elementwise kernel, later
other precisions). `m` offers, on vectors `x` (Python numbers are splatted):

    m.add m.sub m.mul m.div m.fma(a, b, c) m.neg m.abs m.min m.max m.clamp(x, lo, hi)
    m.exp m.log m.tanh m.erf m.sqrt m.floor m.copysign(a, b) m.pow(x, scalar)
    m.lt m.le m.gt m.ge m.isnan (masks)   m.select(mask, a, b)

`min`, `max` and `clamp` propagate NaN (as PyTorch does); so must every hook.

Per-channel parameters (a PReLU's slopes, a layer norm's weight and bias) are data too:
a lowering lists them by name (`params`), each a vector of one value per channel, and
the hook receives `p`, the name -> vector of the channel block being computed (the
emitters load them once per block and pad them with zeros to whole blocks).

>>> from cnngraph.layers import make
>>> make("relu").lower([(4, 5, 5)], {})
Pointwise(layer=Relu())
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..shapes import TransposedWindow, Window


@dataclass(frozen=True)
class Pointwise:
    """y = layer.vector(m, x), element by element (activations). With `params` ((name, one value
    per channel), ...), the hook is layer.vector(m, x, p), p[name] the vector of the channel block
    x belongs to; in a conv or linear epilogue the channels are the output channels."""

    layer: Any
    params: tuple[tuple[str, np.ndarray], ...] = field(default=(), compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class Merge:
    """y = layer.combine(m, x0, x1) folded over the inputs, element by element. The inputs broadcast
    (numpy's rule on (C, *spatial): along each dim a size of 1 repeats).

    `commutative`: the operands may be swapped (else a kernel holding the second operand computes
    combine(m, other, mine)). `finite`: finite operands give a finite result, so the padding lanes of
    a channel block stay finite without masking (division does not: 0 / 0). `channel_scale`: per
    operand position, where that operand is one value per channel (C, 1, ...) and the op multiplies
    the other operand by a function of it, that function in the vector math (mul: s -> s; a divisor:
    s -> 1 / s); None where it does not (add, sub, a dividend). The compiler may then scale a
    consuming convolution's weights instead (squeeze-and-excitation)."""

    layer: Any
    commutative: bool = True
    finite: bool = True
    channel_scale: tuple = field(default=(None, None), compare=False, hash=False, repr=False)


@dataclass(frozen=True)
class ChannelAffine:
    """y = x * scale[c] + shift[c] (batchnorm at inference): folded into a preceding
    conv or linear, else applied in an epilogue or on its own."""

    scale: np.ndarray = field(compare=False, hash=False)
    shift: np.ndarray = field(compare=False, hash=False)


@dataclass(frozen=True)
class Convolution:
    """A windowed weighted sum over channel groups."""

    window: Window
    cin: int
    cout: int
    groups: int
    weight: np.ndarray = field(compare=False, hash=False)
    bias: np.ndarray | None = field(compare=False, hash=False)


@dataclass(frozen=True)
class TransposedConvolution:
    """The adjoint of a convolution (conv_transpose): each input pixel scatters its weighted taps.
    `weight` is (cin, cout / groups, *kernel) (PyTorch's layout). The compiler runs it as one stride-1
    convolution per output phase (`window.phases()`), each writing every stride-th output."""

    window: TransposedWindow
    cin: int
    cout: int
    groups: int
    weight: np.ndarray = field(compare=False, hash=False)
    bias: np.ndarray | None = field(compare=False, hash=False)


@dataclass(frozen=True)
class WindowReduce:
    """max or average over each window (pools, global pools). `divisors`: per spatial dim,
    the divisor of each output position along it (average; the window's divisor is their product)."""

    reduce: str  # "max" | "avg"
    window: Window
    divisors: tuple[tuple[int, ...], ...] = ()


@dataclass(frozen=True)
class Dense:
    """y = W x + b on a flat input (linear)."""

    weight: np.ndarray = field(compare=False, hash=False)
    bias: np.ndarray | None = field(compare=False, hash=False)


@dataclass(frozen=True)
class ChannelStat:
    """One statistic over the channels at each position: `reduce` ("max" or "sum") of
    term(m, x, stats_so_far) times `scale`; over all channels, or with `window` = (before, after)
    over the channels c - before .. c + after of each channel c (clipped to the real ones)."""

    reduce: str
    term: Callable = field(compare=False, hash=False)
    window: tuple[int, int] | None = None
    scale: float = 1.0


@dataclass(frozen=True)
class ChannelReduction:
    """Per position, statistics over the channels, then y = result(m, x, stats) per channel
    (softmax, LRN, layer norm): one mechanism for every channel normalisation.

    `params` ((name, one value per channel), ...): per-channel parameters, passed as a third
    argument, result(m, x, stats, p), p[name] the vector of the channel block (a layer norm's
    weight and bias). With `collapse`, the output has one channel: y = result(m, None, stats)
    per position (a mean or max over the channels)."""

    layer: Any
    stats: tuple[ChannelStat, ...] = field(compare=False, hash=False)
    result: Callable = field(compare=False, hash=False)
    params: tuple[tuple[str, Any], ...] = field(default=(), compare=False, hash=False, repr=False)
    collapse: bool = False


@dataclass(frozen=True)
class Chain:
    """Two or more of these lowerings one after the other, each on the previous one's result
    (a mean over channels and spatial positions: a channel reduction, then a window)."""

    steps: tuple


@dataclass(frozen=True)
class ConstantPad:
    """Spatial padding with a constant."""

    pads: tuple[tuple[int, int], ...]
    value: float


@dataclass(frozen=True)
class Identity:
    """No code: the output is the input (dropout at inference)."""


@dataclass(frozen=True)
class Flatten:
    """(C, *spatial) -> (C * prod(spatial),), channel-major: a relabelling where the layout allows."""


@dataclass(frozen=True)
class Concat:
    """Concatenation along channels: each input lands in its channel slice."""


def channel_reduction(low) -> ChannelReduction | None:
    """The channel reduction a lowering computes: itself, or the one step of a Chain that is one.

    >>> from cnngraph.layers import make
    >>> channel_reduction(make("reduce_max", {"axes": [1, 2]}).lower([(4, 5)], {})).collapse
    True
    """
    if isinstance(low, ChannelReduction):
        return low
    if isinstance(low, Chain):
        return next((s for s in low.steps if isinstance(s, ChannelReduction)), None)
    return None



@dataclass(frozen=True)
class Resample:
    """Separable resampling of the spatial dims (upsample): per spatial dim, per tap, the input index and
    the weight of every output pixel along it, `taps[dim] = ((indices, weights), ...)` (one tap for
    nearest, two for linear); y[o] = sum over the taps of weight * x[index], dim after dim."""

    taps: tuple


@dataclass(frozen=True)
class ChannelSelect:
    """y[c] = x[sources[c]] at every position (slices, shuffles): a view of the input where the
    sources are consecutive channels from the start of a channel block, else a copy."""

    sources: tuple[int, ...]

    def contiguous(self) -> bool:
        """Consecutive channels, in order."""
        return all(b == a + 1 for a, b in itertools.pairwise(self.sources))


LOWERINGS = (Pointwise, Merge, ChannelAffine, Convolution, WindowReduce, Dense, ChannelReduction, ConstantPad,
             Identity, Flatten, Concat, Chain, ChannelSelect, TransposedConvolution, Resample)
