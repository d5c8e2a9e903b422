"""Weight-side preparation kept with an immutable weight code, reused across runs.

A functional run does some work that depends on the weights alone: validation, layout
conversion, the per-channel bounds that choose a path, the weight matrices of the exact
products. At batch 1 that work costs more than the product itself, and a weight code is
usually run many times (a data set through one network). So a datapath keeps what it derived
from a code in a store attached to that code object (weakly: it goes when the code goes), but
only when the code cannot change: every array of it is read-only and backed by an immutable
``bytes`` buffer (:func:`immutable`, :func:`is_immutable`), which numpy never lets anyone write
to. The ``prepare`` methods return such codes; a code built from ordinary (writable) arrays is
prepared afresh on every run, so mutating it between runs is always seen.

The store is keyed by what the derived data depends on besides the code (the datapath's
configuration and the layer); the arrays the entry was built from are kept and checked by
identity on every look-up.
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["immutable", "is_immutable", "weight_store"]

_STORES: weakref.WeakKeyDictionary[Any, dict[Hashable, tuple[tuple[Any, ...], dict[str, Any]]]]
_STORES = weakref.WeakKeyDictionary()


def immutable(a: NDArray[Any]) -> NDArray[Any]:
    """A read-only copy of ``a`` backed by ``bytes`` (no one can make it writable again).

    Examples
    --------
    >>> a = immutable(np.arange(3))
    >>> a.tolist(), a.flags.writeable, is_immutable(a)
    ([0, 1, 2], False, True)
    """
    arr = np.ascontiguousarray(a)
    out = np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)
    return out


def is_immutable(a: object) -> bool:
    """True if ``a`` is an ndarray that views, read-only all the way down, a ``bytes`` object.

    Examples
    --------
    >>> is_immutable(np.zeros(2)), is_immutable(immutable(np.zeros(2))[::2])
    (False, True)
    """
    if not isinstance(a, np.ndarray):
        return False
    base: object = a
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return isinstance(base, bytes)


def weight_store(code: object, arrays: tuple[Any, ...], key: Hashable) -> dict[str, Any]:
    """The store for ``(code, key)``: a dict the caller fills with what it derives.

    ``arrays`` are the code's arrays the derived data comes from. When all of them are
    immutable and ``code`` can be weakly referenced, the same dict comes back on every call
    with the same code, key and arrays; otherwise a new empty dict (nothing is reused).
    """
    if not all(is_immutable(a) for a in arrays):
        return {}
    try:
        per_code = _STORES.setdefault(code, {})
    except TypeError:  # not weakly referenceable (or not hashable): no reuse
        return {}
    entry = per_code.get(key)
    if (
        entry is None
        or len(entry[0]) != len(arrays)
        or any(a is not b for a, b in zip(entry[0], arrays))
    ):
        entry = (tuple(arrays), {})
        per_code[key] = entry
    return entry[1]
