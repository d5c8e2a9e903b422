"""Two's-complement helpers: wrap, saturate and shifts correct for every shift amount.

They are numba functions on int64 scalars and behave identically when the JIT is disabled
(``NUMBA_DISABLE_JIT=1``), where they run on Python or numpy integers. Shift amounts are
clamped to [0, 63] because numba's ``x >> 64`` is ``x`` while numpy's is 0 or -1.
"""

from __future__ import annotations

from shiftsim.kernels._jit import kernel


@kernel(inline=True)
def ashr(x: int, s: int) -> int:
    """Arithmetic right shift: ``floor(x / 2**s)`` for every ``s >= 0``, ``s >= 64`` included."""
    if s > 63:
        s = 63
    return x >> s


@kernel(inline=True)
def shl(x: int, s: int) -> int:
    """Left shift ``x * 2**s``; the caller guarantees the result fits in int64."""
    return x << s


@kernel(inline=True)
def round_shr(x: int, s: int) -> int:
    """Right shift rounding half up: ``floor((x + 2**(s-1)) / 2**s)``; plain ``x`` for ``s == 0``.

    Computed as ``floor(x / 2**s)`` plus bit ``s-1`` of ``x``, so that nothing overflows int64
    (``x + 2**(s-1)`` would for ``x`` near ``2**63``).
    """
    if s <= 0:
        return x
    if s > 63:
        return 0  # |x| <= 2**63: (x + 2**(s-1)) / 2**s lies in [0, 1) for s >= 64
    return (x >> s) + ((x >> (s - 1)) & 1)


@kernel(inline=True)
def wrap(x: int, bits: int, signed: bool) -> int:
    """Reduce ``x`` modulo ``2**bits`` into the signed or unsigned range (``bits`` <= 62)."""
    mask = (1 << bits) - 1
    m = x & mask
    if signed and m >= (1 << (bits - 1)):
        m -= 1 << bits
    return m


@kernel(inline=True)
def saturate(x: int, lo: int, hi: int) -> int:
    """Clamp ``x`` to ``[lo, hi]``."""
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x


@kernel(inline=True)
def apply_overflow(x: int, bits: int, signed: bool, sat: bool) -> int:
    """Fit ``x`` into a ``bits``-wide register: saturate when ``sat``, else wrap."""
    if sat:
        if signed:
            return saturate(x, -(1 << (bits - 1)), (1 << (bits - 1)) - 1)
        return saturate(x, 0, (1 << bits) - 1)
    return wrap(x, bits, signed)
