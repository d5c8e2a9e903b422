"""Weight files: arrays by name in an ``.npz`` (NumPy's zip of ``.npy`` files)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = ["read_npz"]


def read_npz(
    path: str | Path, *, required: Iterable[str] = (), what: str = "weights"
) -> dict[str, NDArray[np.generic]]:
    """Every array of an ``.npz`` file by name; real numbers only.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file.
    required : iterable of str
        Names that must be present.
    what : str, default "weights"
        The parameter the file came from, for messages.

    Raises
    ------
    ValueError
        The file cannot be read, a required name is missing (the message names it and lists
        what the file holds), or an array is not real numbers (complex, string): a complex
        array is refused, never silently made real.

    Examples
    --------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "w.npz")
    >>> np.savez(path, conv=np.ones(2) + 1j)
    >>> read_npz(path)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: weights: ...w.npz: array 'conv' is complex128; weights must be real numbers
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{what}: cannot read {path}: {exc}") from None
    for name, arr in arrays.items():
        if arr.dtype.kind not in "biuf":
            raise ValueError(
                f"{what}: {path}: array {name!r} is {arr.dtype}; weights must be real numbers"
            )
    missing = [n for n in required if n not in arrays]
    if missing:
        held = ", ".join(sorted(arrays)[:8]) or "nothing"
        raise ValueError(
            f"{what}: {path} has no array named {missing[0]!r} (needs {', '.join(missing)}; "
            f"holds {held})"
        )
    return arrays
