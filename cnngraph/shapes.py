"""The one output-size formula and the helpers around it.

Every stage (shape inference, report, FC view, codegen bounds) asks this module;
nobody re-derives the formula.

>>> out_size(224, 11, stride=4, pad_lo=2, pad_hi=2)
55
>>> out_size(112, 3, stride=2, ceil_mode=True)
56
>>> transposed_out_size(56, 4, stride=2, pad_lo=1, pad_hi=1)  # a conv_transpose undoes out_size(112, 4, 2, 1, 1)
112
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def out_size(n: int, k: int, stride: int = 1, pad_lo: int = 0, pad_hi: int = 0,
             dilation: int = 1, ceil_mode: bool = False) -> int:
    """Windows along one dim: floor((n + lo + hi - d*(k-1) - 1) / s) + 1.

    With `ceil_mode` the division rounds up, but the extra (partial) window
    must start inside the input or the left padding (PyTorch's and ONNX's rule).
    Ceil mode never yields fewer windows than floor mode: where padding exceeds
    half the kernel (which PyTorch forbids) a full window may start in the right
    padding, and it is kept.
    Returns a value < 1 when no window fits; callers report that as an error.

    >>> out_size(1, 1, 1, 0, 1), out_size(1, 1, 1, 0, 1, ceil_mode=True)
    (2, 2)
    >>> out_size(1, 2, 2), out_size(1, 2, 2, ceil_mode=True)  # a partial window, as in PyTorch
    (0, 1)
    """
    span = n + pad_lo + pad_hi - dilation * (k - 1) - 1
    if span < (1 - stride if ceil_mode else 0):
        return 0
    floor = span // stride + 1  # 0 when only ceil mode's partial first window fits
    if not ceil_mode or span % stride == 0:
        return floor
    # the one extra window ceil mode adds, unless it would start in the right padding
    return floor + 1 if floor * stride < n + pad_lo else floor


def transposed_out_size(n: int, k: int, stride: int = 1, pad_lo: int = 0, pad_hi: int = 0,
                        dilation: int = 1, output_padding: int = 0) -> int:
    """Outputs of a transposed window (conv_transpose) along one dim, the formula above run backwards:
    (n - 1) * s - lo - hi + d*(k-1) + output_padding + 1.

    Every input pixel i scatters its k taps to the uncropped positions i*s + t*d; `output_padding`
    extends the far end (so the size `out_size` maps back to n can be chosen: for any
    0 <= output_padding < stride, out_size(transposed_out_size(n, ...), ...) == n), and the
    padding crops lo and hi positions. Returns a value < 1 when nothing is left; callers report it.

    >>> [transposed_out_size(5, 3, 2, 1, 1, 1, op) for op in (0, 1)]
    [9, 10]
    >>> [out_size(transposed_out_size(5, 3, 2, 1, 1, 1, op), 3, 2, 1, 1) for op in (0, 1)]
    [5, 5]
    """
    return (n - 1) * stride - pad_lo - pad_hi + dilation * (k - 1) + output_padding + 1


@dataclass(frozen=True)
class Window:
    """The geometry every windowed kind shares (conv, pools, later conv-transpose and
    upsample): per spatial dim the input size, kernel, stride, dilation, (lo, hi) padding and
    the output size the formula above gives. The compiler, the FC view and the interop code
    read windows from here.

    >>> w = Window.of((32, 32), (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)))
    >>> w.out, w.nd
    ((16, 16), 2)
    """

    input: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    out: tuple[int, ...]

    @classmethod
    def of(cls, spatial, kernel, stride, dilation, pads, ceil_mode: bool = False) -> Window:
        out = tuple(out_size(n, k, s, lo, hi, d, ceil_mode)
                    for n, k, s, d, (lo, hi) in zip(spatial, kernel, stride, dilation, pads))
        return cls(tuple(spatial), tuple(kernel), tuple(stride), tuple(dilation),
                   tuple((int(lo), int(hi)) for lo, hi in pads), out)

    @property
    def nd(self) -> int:
        return len(self.kernel)

    @property
    def pad_lo(self) -> tuple[int, ...]:
        return tuple(lo for lo, _ in self.pads)

    @property
    def pad_hi(self) -> tuple[int, ...]:
        return tuple(hi for _, hi in self.pads)

    def as3d(self) -> Window:
        """The same window on (D, H, W): missing leading dims of size 1 (1D and 2D run as 3D)."""
        lead = 3 - self.nd
        one = (1,) * lead
        return Window(one + self.input, one + self.kernel, one + self.stride, one + self.dilation,
                      ((0, 0),) * lead + self.pads, one + self.out)


@dataclass(frozen=True)
class TransposedWindow:
    """The geometry of a transposed window (conv_transpose), per spatial dim: the input size, kernel,
    stride, dilation, (lo, hi) cropping, output padding and the output size `transposed_out_size`
    gives. It is the adjoint of the `Window` with the same kernel, stride, dilation and padding on
    the output (`matching()`): where that conv's output pixel i reads input pixel o under tap t,
    this scatters input pixel i to output pixel o under tap t.

    `phases()` decomposes it into stride-1 windows, so it runs as ordinary convolutions.

    >>> w = TransposedWindow.of((4,), (3,), (2,), (1,), ((1, 1),), (1,))
    >>> w.out, w.matching().out == w.input
    ((8,), True)
    """

    input: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    pads: tuple[tuple[int, int], ...]
    output_padding: tuple[int, ...]
    out: tuple[int, ...]

    @classmethod
    def of(cls, spatial, kernel, stride, dilation, pads, output_padding) -> TransposedWindow:
        out = tuple(transposed_out_size(n, k, s, lo, hi, d, op) for n, k, s, d, (lo, hi), op
                    in zip(spatial, kernel, stride, dilation, pads, output_padding))
        return cls(tuple(spatial), tuple(kernel), tuple(stride), tuple(dilation),
                   tuple((int(lo), int(hi)) for lo, hi in pads), tuple(output_padding), out)

    @property
    def nd(self) -> int:
        return len(self.kernel)

    def matching(self) -> Window:
        """The convolution window this one is the transpose of: on the output, back to the input."""
        return Window.of(self.out, self.kernel, self.stride, self.dilation, self.pads)

    def phases(self):
        """The transposed window as stride-1 windows, one per output phase (every combination of
        one `Phase` per dim). Output pixel o = first + stride * q (q = 0 .. count-1) is the sum over
        the taps t with t*d = o + lo (mod stride) of input pixel (o + lo - t*d) / stride: for these
        outputs a stride-1 correlation over the input reading q - pad + m * dilation under tap m,
        the taps in reverse order (the flipped kernel of the textbook picture).

        >>> [(p.first, p.count, p.taps, p.pad, p.dilation) for p in TransposedWindow.of(
        ...     (4,), (4,), (2,), (1,), ((1, 1),), (0,)).phases()[0]]
        [(0, 4, (3, 1), 1, 1), (1, 4, (2, 0), 0, 1)]
        """
        return tuple(_phases_1d(n, k, s, d, lo, o)
                     for n, k, s, d, (lo, _), o in zip(self.input, self.kernel, self.stride, self.dilation,
                                                        self.pads, self.out))


@dataclass(frozen=True)
class Phase:
    """One output phase of a transposed window along one dim: outputs first, first + stride, ...
    (`count` of them) are a stride-1 window over the input with the kernel taps `taps` (in the order
    the window reads them), input position q - pad + m * dilation for output q and tap index m.
    `taps` may be empty: those outputs receive no input (bias only)."""

    first: int
    count: int
    taps: tuple[int, ...]
    pad: int
    dilation: int


def _phases_1d(n, k, s, d, lo, out) -> tuple[Phase, ...]:
    g = math.gcd(s, d)
    phases = []
    for first in range(min(s, out)):
        count = -(-(out - first) // s)
        rho = (first + lo) % s
        taps = [t for t in range(k) if (t * d) % s == rho]
        # input index of output q under tap t: q + (first + lo - t*d) / s, decreasing in t by d/g
        pad = -((first + lo - taps[-1] * d) // s) if taps else 0
        phases.append(Phase(first, count, tuple(reversed(taps)), pad, d // g))
    return tuple(phases)


def same_pads(n: int, k: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(lo, hi) padding so that out = ceil(n / stride); the odd pixel goes at the end.

    >>> same_pads(224, 3, 2)
    (0, 1)
    """
    total = max((math.ceil(n / stride) - 1) * stride + (k - 1) * dilation + 1 - n, 0)
    return total // 2, total - total // 2


def unseen(n: int, k: int, stride: int, pad_lo: int, pad_hi: int, dilation: int, out: int) -> int:
    """Real input rows/cols after the last window that no window sees, beyond the
    gap the stride skips between windows anyway (1x1 stride 2 is periodic by design).

    >>> unseen(227, 11, 4, 0, 0, 1, out_size(227, 11, 4))
    0
    >>> unseen(224, 11, 4, 0, 0, 1, out_size(224, 11, 4))
    1
    >>> unseen(56, 1, 2, 0, 0, 1, out_size(56, 1, 2))
    0
    """
    extent = dilation * (k - 1) + 1
    last_end = (out - 1) * stride + extent - pad_lo  # exclusive, input coords
    lost = max(n - last_end, 0)
    return lost if lost > max(stride - extent, 0) else 0


def numel(shape) -> int:
    """Number of elements of a shape.

    >>> numel((3, 4, 5))
    60
    """
    return math.prod(shape)
