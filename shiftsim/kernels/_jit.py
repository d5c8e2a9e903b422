"""The one decorator every kernel uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import numba

F = TypeVar("F", bound=Callable[..., Any])


def kernel(func: F | None = None, *, parallel: bool = False, inline: bool = False) -> Any:
    """Compile ``func`` with numba: ``nopython``, ``cache=True``, ``nogil=True``, no fastmath.

    Parameters
    ----------
    func : callable
        The function to compile (when used as ``@kernel``).
    parallel : bool, default False
        Enable ``prange``; use only where a benchmark shows it pays.
    inline : bool, default False
        Inline into callers at the numba IR level (small helpers).
    """
    options: dict[str, Any] = {"cache": True, "nogil": True, "parallel": parallel}
    if inline:
        options["inline"] = "always"

    def wrap(f: F) -> F:
        return numba.njit(**options)(f)  # type: ignore[no-any-return]

    return wrap(func) if func is not None else wrap
