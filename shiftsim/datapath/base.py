"""What every datapath shares: the ``run`` entry point, its levels, and the result type.

Also the operand checks and layout conversions the subclasses' ``prepare`` and ``check`` use.
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from shiftsim.counts import Counts
from shiftsim.formats import FixedFormat, as_float_array
from shiftsim.layers import Conv2d, Linear

__all__ = [
    "GOLDEN_LIMIT_S",
    "GOLDEN_NOTICE_S",
    "INT64_MAX",
    "LEVELS",
    "Progress",
    "Datapath",
    "LayerResult",
    "Prepared",
    "check_bias_raw",
    "conv_geometry",
    "float_operands",
    "from_nchw_int64",
    "to_nchw_int64",
]

#: Levels of modelling a datapath runs at (SPEC §1). ``analytic`` is :func:`shiftsim.estimate`.
LEVELS = ("functional", "golden", "cycle")

#: The cycle-level model, registered by :mod:`shiftsim.cycle` (which the package ``shiftsim``
#: imports): the cycle model builds on the datapaths, so ``datapath`` never imports it.
_CYCLE_MODEL: list[Callable[..., LayerResult]] = []


def register_cycle_model(run_cycle: Callable[..., LayerResult]) -> None:
    """Register the cycle model that ``Datapath.run(..., level="cycle")`` calls.

    ``run_cycle(datapath, layer, operands, hardware, trace=..., max_cycles=...)``.
    """
    _CYCLE_MODEL[:] = [run_cycle]


#: Largest int64: the kernels' worst-case partial sums are checked against it.
INT64_MAX = (1 << 63) - 1

#: Default limit on the golden model's estimated run time per layer, in seconds
#: (``Datapath.run(golden_limit_s=...)``; the ``SHIFTSIM_GOLDEN_LIMIT_S`` variable overrides it).
GOLDEN_LIMIT_S = 600.0

#: Above this estimated run time the golden model warns and shows its progress.
GOLDEN_NOTICE_S = 10.0

#: ``progress(done, total)``: a golden model's report, once per (batch item, output channel).
Progress = Callable[[int, int], None]


def golden_limit() -> float:
    """The golden model's default time limit: ``SHIFTSIM_GOLDEN_LIMIT_S`` or GOLDEN_LIMIT_S."""
    text = os.environ.get("SHIFTSIM_GOLDEN_LIMIT_S")
    if text is None or not text.strip():
        return GOLDEN_LIMIT_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(
            f"SHIFTSIM_GOLDEN_LIMIT_S must be a number of seconds, got {text!r}"
        ) from None
    return _check_limit("SHIFTSIM_GOLDEN_LIMIT_S", value)


def _check_limit(name: str, value: Any) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a number of seconds, got {value!r}")
    if not value > 0:  # NaN too
        raise ValueError(f"{name} must be > 0 seconds (inf: no limit), got {value!r}")
    return float(value)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Progress]:
    """A :data:`Progress` that draws on stderr (tqdm when installed, else a line a second)."""
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with the reports extra
        last = [0.0]

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last[0] >= 1.0:
                last[0] = now
                sys.stderr.write(f"{label}: {done}/{total} output channels\n")

        yield report
        return
    bar = tqdm(desc=label, unit="ch", file=sys.stderr, mininterval=1.0)
    try:

        def update(done: int, total: int) -> None:
            bar.total = total
            bar.n = done
            bar.refresh() if done == 0 else bar.update(0)

        yield update
        if bar.total is not None:  # finished: the last channel is done too
            bar.n = bar.total
            bar.refresh()
    finally:
        bar.close()


@dataclass(frozen=True, eq=False)
class LayerResult:
    """The outcome of running one layer on a datapath.

    Attributes
    ----------
    y_raw : ndarray of int64
        Accumulator values, ``(B, Co, Ho, Wo)`` for Conv2d or ``(B, out_features)`` for Linear.
    out_format : FixedFormat
        The format of ``y_raw`` (the accumulator's).
    scale : float or ndarray of float64
        Float scale applied on top of ``out_format`` (the weight scale ``wmax`` for ShiftCNN,
        one per output channel when the code has a per-channel scale), or 1.0.
    counts : Counts
        Events of the run.
    trace : ndarray or None
        Per-cycle trace of the cycle-level model when asked for, else None.
    """

    y_raw: NDArray[np.int64]
    out_format: FixedFormat
    scale: float | NDArray[np.float64]
    counts: Counts
    trace: NDArray[Any] | None = None

    def __post_init__(self) -> None:
        y = self.y_raw
        if not isinstance(y, np.ndarray) or y.dtype.kind not in "iu":
            raise TypeError(
                f"LayerResult.y_raw must be an integer ndarray, got {type(y).__name__}"
                f"{f' of dtype {y.dtype}' if isinstance(y, np.ndarray) else ''}"
            )
        if y.ndim < 2:
            raise ValueError(
                f"LayerResult.y_raw must have a batch and a channel axis, got {y.shape}"
            )
        if not isinstance(self.out_format, FixedFormat):
            raise TypeError(
                f"LayerResult.out_format must be a FixedFormat, got {self.out_format!r}"
            )
        if not isinstance(self.counts, Counts):
            raise TypeError(
                f"LayerResult.counts must be a Counts, got {type(self.counts).__name__}"
            )
        if self.trace is not None and not isinstance(self.trace, np.ndarray):
            raise TypeError(f"LayerResult.trace must be an ndarray or None, got {self.trace!r}")
        if isinstance(self.scale, (bool, np.bool_)) or not isinstance(
            self.scale, (int, float, np.integer, np.floating, np.ndarray)
        ):
            raise TypeError(f"LayerResult.scale must be a float or an array, got {self.scale!r}")
        scale = np.asarray(self.scale, dtype=np.float64)
        if scale.shape not in ((), (y.shape[1],)):
            raise ValueError(
                f"LayerResult.scale must have shape () or ({y.shape[1]},) (one per output "
                f"channel), got {scale.shape}"
            )
        if not np.all(np.isfinite(scale)) or np.any(scale < 0):
            raise ValueError(f"LayerResult.scale must be finite and >= 0, got {self.scale!r}")

    @property
    def y(self) -> NDArray[np.float64]:
        """The dequantized output: ``y_raw * 2**-frac_bits * scale``, float64."""
        y = self.out_format.to_float(self.y_raw)
        scale = np.asarray(self.scale, dtype=np.float64)
        if scale.ndim == 1:  # per-output-channel scale
            scale = scale.reshape((1, -1) + (1,) * (y.ndim - 2))
        return y * scale


@dataclass(frozen=True, eq=False)
class Prepared:
    """Float operands turned into a datapath's codes, with their dequantized values.

    Attributes
    ----------
    code : object
        Weight code the datapath's ``run`` takes (ShiftCode, LogCode, raw int64 array, ...).
    x_in : object
        Activation input ``run`` takes (raw int64 array or LogCode).
    w_deq, x_deq : ndarray of float64
        The values the codes represent, in the layer's weight and input shapes.
    bias_raw : ndarray of int64 or None
        Bias in accumulator units.
    clipped : int
        Values clipped while quantizing (to the weight, activation or bias format). Not
        to be confused with ``Counts.overflows``, the accumulator updates that wrapped or
        saturated.
    """

    code: Any
    x_in: Any
    w_deq: NDArray[np.float64]
    x_deq: NDArray[np.float64]
    bias_raw: NDArray[np.int64] | None = None
    clipped: int = 0


class Datapath(abc.ABC):
    """Base of the datapaths: validate, then run at the level asked for.

    Subclasses are frozen keyword-only dataclasses holding the configuration. They implement
    :attr:`out_format`, :meth:`prepare` (float -> codes), :meth:`check` (validation of
    ``run``'s arguments, before any kernel), :meth:`run_functional` (numba kernels) and
    :meth:`run_golden` (the oracle in :mod:`shiftsim.reference`). The cycle level lives in
    :mod:`shiftsim.cycle`.
    """

    @property
    @abc.abstractmethod
    def out_format(self) -> FixedFormat:
        """The accumulator's format: that of ``LayerResult.y_raw``."""

    def run(
        self,
        layer: Conv2d | Linear,
        code: Any,
        x: Any,
        bias_raw: ArrayLike | None = None,
        *,
        level: str = "functional",
        hardware: Any = None,
        trace: bool = False,
        max_cycles: int | None = None,
        golden_limit_s: float | None = None,
    ) -> LayerResult:
        """Run one layer.

        Parameters
        ----------
        layer : Conv2d or Linear
            The layer geometry.
        code : object
            Weight code (type depends on the datapath).
        x : object
            Input (raw integers or codes, depending on the datapath).
        bias_raw : array_like of int, optional
            One bias per output channel, in accumulator units.
        level : {"functional", "golden", "cycle"}
            Which model computes the result; all give the same ``y_raw``.
        hardware : Hardware, optional
            The machine for ``level="cycle"`` (a default one when None).
        trace : bool, default False
            With ``level="cycle"``, also return the per-cycle trace.
        max_cycles : int, optional
            With ``level="cycle"``, stop with an error past this many cycles.
        golden_limit_s : float, optional
            With ``level="golden"``: refuse (``ValueError``, before any work) a layer whose
            estimated golden run time (:meth:`golden_seconds`) exceeds this many seconds.
            Default: the ``SHIFTSIM_GOLDEN_LIMIT_S`` environment variable, else
            :data:`GOLDEN_LIMIT_S`. Above :data:`GOLDEN_NOTICE_S` the run warns with its
            estimate and shows its progress on stderr.

        Returns
        -------
        LayerResult
        """
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}, got {level!r}")
        if not isinstance(layer, (Conv2d, Linear)):
            raise TypeError(f"layer must be a Conv2d or Linear, got {type(layer).__name__}")
        operands = self.check(layer, code, x, bias_raw)
        if level == "functional":
            return self.run_functional(layer, operands)
        if level == "golden":
            return self._run_golden_bounded(layer, operands, golden_limit_s)
        if not _CYCLE_MODEL:  # pragma: no cover - the package shiftsim imports shiftsim.cycle
            raise RuntimeError("the cycle model is not loaded: import shiftsim.cycle")
        run_cycle = _CYCLE_MODEL[0]
        return run_cycle(self, layer, operands, hardware, trace=trace, max_cycles=max_cycles)

    @abc.abstractmethod
    def prepare(
        self,
        layer: Conv2d | Linear,
        w: ArrayLike,
        x: ArrayLike,
        bias: ArrayLike | None = None,
    ) -> Prepared:
        """Quantize float weights, inputs and bias to this datapath's codes."""

    @abc.abstractmethod
    def check(self, layer: Conv2d | Linear, code: Any, x: Any, bias_raw: ArrayLike | None) -> Any:
        """Validate ``run``'s arguments and return them normalized (NCHW, int64, ...)."""

    @abc.abstractmethod
    def run_functional(self, layer: Conv2d | Linear, operands: Any) -> LayerResult:
        """The numba kernels."""

    def golden_seconds(self, layer: Conv2d | Linear, input_shape: tuple[int, ...]) -> float:
        """A rough estimate of the golden model's run time on ``layer``, in seconds.

        MACs times a per-MAC cost of the pure-Python oracle measured on a laptop-class CPU
        (microseconds per MAC); good to a factor of a few, which is what a limit needs.

        Examples
        --------
        >>> from shiftsim.datapath.shift_add import ShiftAddDatapath
        >>> round(ShiftAddDatapath(n_codebooks=2).golden_seconds(Linear(4096, 4096), (1, 4096)))
        50
        """
        shape = tuple(input_shape)
        if len(shape) == 2:
            shape = (shape[0], shape[1], 1, 1)
        return layer.as_conv().macs(shape) * self._golden_s_per_mac()

    def _golden_s_per_mac(self) -> float:
        return 1.5e-6

    def _run_golden_bounded(
        self, layer: Conv2d | Linear, operands: Any, limit: float | None
    ) -> LayerResult:
        x = getattr(operands, "x_raw", None)
        if x is None:
            x = operands.x_exp
        seconds = self.golden_seconds(layer, np.shape(x))
        macs = layer.as_conv().macs(np.shape(x))
        limit = golden_limit() if limit is None else _check_limit("golden_limit_s", limit)
        if seconds > limit:
            raise ValueError(
                f"level='golden': the golden model would take about {_duration(seconds)} on "
                f"this layer ({macs:,} MACs in pure Python), over golden_limit_s={limit:g}; "
                "crop the input, use level='functional' (the same result, fast), or raise the "
                "limit (golden_limit_s=..., shiftsim --golden-limit S, or the "
                "SHIFTSIM_GOLDEN_LIMIT_S environment variable)"
            )
        if seconds <= GOLDEN_NOTICE_S:
            return self.run_golden(layer, operands)
        warnings.warn(
            f"the golden model will take about {_duration(seconds)} on this layer ({macs:,} "
            "MACs); level='functional' gives the same result far sooner",
            RuntimeWarning,
            stacklevel=3,
        )
        with _progress_bar(f"golden {type(layer).__name__}") as progress:
            return self.run_golden(layer, operands, progress=progress)

    @abc.abstractmethod
    def run_golden(
        self, layer: Conv2d | Linear, operands: Any, progress: Progress | None = None
    ) -> LayerResult:
        """The golden model."""

    def _layer_result(
        self,
        layer: Conv2d | Linear,
        y: NDArray[np.int64],
        scale: float | NDArray[np.float64],
        counts: Counts,
    ) -> LayerResult:
        """The result of a run: NCHW output ``y`` in ``layer``'s layout, in :attr:`out_format`."""
        return LayerResult(
            y_raw=from_nchw_int64(layer, y), out_format=self.out_format, scale=scale, counts=counts
        )


def float_operands(
    layer: Conv2d | Linear, w: ArrayLike, x: ArrayLike, bias: ArrayLike | None
) -> tuple[NDArray[np.floating], NDArray[np.floating], NDArray[np.floating] | None]:
    """Validate ``prepare``'s float operands against ``layer``; return them as float arrays.

    Returns
    -------
    w, x : ndarray of float32 or float64
        See :func:`~shiftsim.formats.as_float_array`; ``w`` in ``layer.weight_shape``.
    bias : ndarray of float32 or float64, shape ``(Co,)``, or None

    Raises
    ------
    TypeError, ValueError
        If an operand is not a finite float array or has the wrong shape.
    """
    w_arr = as_float_array(w, "w")
    x_arr = as_float_array(x, "x")
    if w_arr.shape != layer.weight_shape:
        raise ValueError(f"w must have shape {layer.weight_shape}, got {w_arr.shape}")
    layer.check_input_shape(x_arr.shape, "x")
    if bias is None:
        return w_arr, x_arr, None
    b_arr = as_float_array(bias, "bias")
    if b_arr.shape != (layer.weight_shape[0],):
        raise ValueError(f"bias must have shape ({layer.weight_shape[0]},), got {b_arr.shape}")
    return w_arr, x_arr, b_arr


def check_bias_raw(
    layer: Conv2d | Linear, bias_raw: ArrayLike | None, fmt: FixedFormat
) -> NDArray[np.int64] | None:
    """Validate ``run``'s raw bias against the accumulator format ``fmt``; return it as int64.

    Raises
    ------
    TypeError, ValueError
        If ``bias_raw`` is not an integer array in ``fmt`` of shape ``(Co,)``.
    """
    if bias_raw is None:
        return None
    bias = fmt.check_raw(bias_raw, "bias_raw")
    if bias.shape != (layer.weight_shape[0],):
        raise ValueError(f"bias_raw must have shape ({layer.weight_shape[0]},), got {bias.shape}")
    return bias


def to_nchw_int64(layer: Conv2d | Linear, a: NDArray[np.int64]) -> NDArray[np.int64]:
    """``a`` in NCHW layout (a Linear layer's 1x1 view), contiguous int64."""
    return np.ascontiguousarray(layer.to_nchw(a), dtype=np.int64)


def from_nchw_int64(layer: Conv2d | Linear, y: NDArray[np.generic]) -> NDArray[np.int64]:
    """An NCHW output back in ``layer``'s own layout, int64."""
    return np.asarray(layer.from_nchw(y), dtype=np.int64)


def conv_geometry(conv: Conv2d) -> tuple[int, int, int, int, int, int, int]:
    """``(stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups)``: a kernel's geometry."""
    return (*conv.stride, *conv.padding, *conv.dilation, conv.groups)
