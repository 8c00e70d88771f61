"""Numbers for people: one place that decides how counts, bytes and times are shown.

>>> count(416_520), count(15_470_264_320), count(7)
('416.5K', '15.47G', '7')
>>> nbytes(246_824), nbytes(553_430_176), nbytes(512)
('241.0 KiB', '527.8 MiB', '512 B')
>>> plural(1, "layer"), plural(12, "layer"), plural(2, "batch", "batches")
('1 layer', '12 layers', '2 batches')
>>> seconds(0.61873), seconds(0.0123), seconds(2.4e-05), seconds(95.2)
('619 ms', '12.3 ms', '24 µs', '1 min 35 s')
"""

from __future__ import annotations

_SI = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("K", 10**3))
_BIN = (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10))


def count(n: float) -> str:
    """A count with a K/M/G/T suffix and four significant digits at most (below 1000: as is)."""
    for suffix, size in _SI:
        if abs(n) >= size:
            v = n / size
            return f"{v:.4g}{suffix}" if v < 1000 else f"{v:,.0f}{suffix}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def nbytes(n: float) -> str:
    """Bytes in KiB/MiB/GiB/TiB with one decimal (below 1 KiB: whole bytes)."""
    for unit, size in _BIN:
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def plural(n: int, word: str, many: str | None = None) -> str:
    """`n word` with the plural where it is needed (`many`, else word + 's'); n with thousands commas."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def seconds(t: float) -> str:
    """A duration: µs, ms, s, or minutes and seconds."""
    if t < 1e-3:
        return f"{t * 1e6:.0f} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    if t < 60:
        return f"{t:.2f} s"
    return f"{int(t // 60)} min {t % 60:.0f} s"
