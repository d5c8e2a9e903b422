"""Parameter sweeps: grids of datapath or hardware options -> a table, resumable, in parallel.

:func:`sweep` evaluates a target at every point of a grid (the Cartesian product of the values
given for each parameter) on local processes (default), in this process, or on a Dask cluster
(pass a ``distributed.Client``). Each finished point is stored in the results file at once (JSON
lines, JSON, CSV or Parquet by the file's suffix: :mod:`shiftsim.io.results`), so an interrupted
sweep loses nothing finished; run the same call again and it computes only the missing points,
each exactly once.

Design of the guarantees:

- *Identity.* Each record carries the point's key and the identity of the target and its base
  configuration (:func:`target_identity`); a results file of another configuration is refused.
- *One writer.* A sweep holds an exclusive lock on ``<out>.lock`` from reading the file to its
  last write; a second sweep on the same file waits, then re-reads the finished points under
  the lock and computes only what is missing. The system drops the lock when its holder dies.
- *Failures.* A point that raises is recorded with its ``error`` and the sweep goes on; the
  output path is checked before any point is computed. ``retry_failed`` computes them again.
- *Workers* die with the sweep's process (``PR_SET_PDEATHSIG`` on Linux, and a parent watchdog).

The module is also callable as :func:`sweep` (deprecated; use ``shiftsim.sweep.sweep`` or
``shiftsim.run_sweep``), for code written when ``shiftsim.sweep`` was the function.

Targets: any picklable callable ``point -> dict`` (``point`` maps parameter names to values), or
:class:`NetworkTarget` / :class:`LayerTarget`, which apply the point to a base datapath (and
hardware) and simulate a network or a layer.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import enum
import functools
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import pickle
import signal
import sys
import threading
import time
import types
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import LEVELS, Datapath
from shiftsim.formats import as_float_array, check_int
from shiftsim.io.results import ResultsFile, read_results
from shiftsim.layers import Conv2d, Linear
from shiftsim.network import Network, Requant, conv_float

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LayerTarget",
    "NetworkTarget",
    "apply_point",
    "grid_points",
    "point_key",
    "read_results",
    "sweep",
    "target_identity",
]

Point = dict[str, Any]


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[Point]:
    """All points of a grid, in order (the last parameter varies fastest).

    Examples
    --------
    >>> grid_points({"n_codebooks": [1, 2], "bits": [3, 4]})
    [{'n_codebooks': 1, 'bits': 3}, {'n_codebooks': 1, 'bits': 4}, {'n_codebooks': 2, 'bits': 3}, {'n_codebooks': 2, 'bits': 4}]
    """  # noqa: E501
    if not isinstance(grid, Mapping) or not grid:
        raise ValueError(f"grid must be a non-empty dict of name -> list of values, got {grid!r}")
    for name, values in grid.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"grid names must be non-empty strings, got {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(f"grid[{name!r}] must be a non-empty list of values, got {values!r}")
    names = list(grid)
    return [dict(zip(names, combo)) for combo in itertools.product(*grid.values())]


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a grid value or a metric."""
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else str(v)
    if isinstance(value, str) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return repr(value)


def point_key(point: Mapping[str, Any]) -> str:
    """The canonical identity of a point: sorted JSON of its plain values.

    Examples
    --------
    >>> point_key({"bits": 4, "n_codebooks": 2})
    '{"bits": 4, "n_codebooks": 2}'
    """
    return json.dumps({k: _plain(v) for k, v in point.items()}, sort_keys=True)


def _coerce(name: str, current: Any, value: Any) -> Any:
    """Convert ``value`` (often a string from the command line) to the type of ``current``."""
    if isinstance(current, enum.Enum) and isinstance(value, str):
        try:
            return type(current)[value.upper()]
        except KeyError:
            names = [m.name for m in type(current)]
            raise ValueError(f"{name} must be one of {names}, got {value!r}") from None
    if isinstance(current, bool) and isinstance(value, str):
        if value.lower() in ("1", "true", "yes"):
            return True
        if value.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if isinstance(current, float) and isinstance(value, (str, int)):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if (current is None or isinstance(current, int)) and isinstance(value, str):
        if value.lower() == "none":
            return None
        try:
            return int(value)
        except ValueError:
            pass
    return value


def apply_point(
    point: Mapping[str, Any], datapath: Datapath, hardware: Any = None
) -> tuple[Datapath, Any, Point]:
    """Apply a point's values to a datapath and a hardware configuration.

    A name matches a datapath field first, then a hardware field; prefix it with ``hw.`` to
    force the hardware. ``datapath`` (a Datapath instance) replaces the base datapath. Names
    that match nothing end up in the returned ``rest`` (the caller decides; the targets raise).
    String values are converted to the field's type (enums by name, case-insensitive).

    Returns
    -------
    datapath, hardware, rest
    """
    dp_changes: dict[str, Any] = {}
    hw_changes: dict[str, Any] = {}
    rest: Point = {}
    if "datapath" in point:
        if not isinstance(point["datapath"], Datapath):
            raise TypeError(f"datapath values must be Datapath objects, got {point['datapath']!r}")
        datapath = point["datapath"]
    dp_fields = {f.name for f in dataclasses.fields(datapath)}  # type: ignore[arg-type]
    hw_fields = (
        {f.name for f in dataclasses.fields(hardware)}
        if dataclasses.is_dataclass(hardware)
        else set()
    )
    for name, value in point.items():
        if name == "datapath":
            continue
        if name.startswith("hw.") and name[3:] in hw_fields:
            hw_changes[name[3:]] = _coerce(name, getattr(hardware, name[3:]), value)
        elif name in dp_fields:
            dp_changes[name] = _coerce(name, getattr(datapath, name), value)
        elif name in hw_fields:
            hw_changes[name] = _coerce(name, getattr(hardware, name), value)
        else:
            rest[name] = value
    if dp_changes:
        datapath = dataclasses.replace(datapath, **dp_changes)  # type: ignore[type-var]
    if hw_changes:
        hardware = dataclasses.replace(hardware, **hw_changes)
    return datapath, hardware, rest


def _unknown(rest: Point, datapath: Datapath, hardware: Any) -> ValueError:
    names = sorted(f.name for f in dataclasses.fields(datapath))  # type: ignore[arg-type]
    if dataclasses.is_dataclass(hardware):
        names += sorted(f"hw.{f.name}" for f in dataclasses.fields(hardware))
    return ValueError(
        f"grid parameter(s) {sorted(rest)} match no field of {type(datapath).__name__}"
        f"{' or the hardware' if hardware is not None else ''}; valid: {', '.join(names)}"
    )


def _check_instance(name: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise TypeError(f"{name} must be a {names}, got {type(value).__name__}")


def _check_common(owner: str, datapath: Any, hardware: Any, level: Any) -> None:
    from shiftsim.hardware import Hardware

    _check_instance(f"{owner}.datapath", datapath, Datapath)
    if hardware is not None:
        _check_instance(f"{owner}.hardware", hardware, Hardware)
    if level not in LEVELS:
        raise ValueError(f"{owner}.level must be one of {LEVELS}, got {level!r}")


def _counts_dict(counts: Counts) -> dict[str, int | float]:
    return {k: v for k, v in dataclasses.asdict(counts).items()}


def _sqnr_db(ref: NDArray[np.float64], got: NDArray[np.float64]) -> float:
    noise = float(np.sum((ref - got) ** 2))
    if noise == 0:
        return math.inf
    sig = float(np.sum(ref**2))
    return 10 * math.log10(sig / noise) if sig > 0 else -math.inf


@dataclass(frozen=True, kw_only=True, eq=False)
class NetworkTarget:
    """Simulate a network at each sweep point.

    Parameters
    ----------
    network : Network
    datapath : Datapath
        The base datapath; sweep points replace its fields.
    x : ndarray of float, optional
        Inputs of a chained run (:meth:`Network.run`); without them every layer runs on its own
        random input (:meth:`Network.run_layers`).
    labels : ndarray of int, optional
        With ``x``: report top-1 accuracy.
    hardware : Hardware, optional
        Base hardware (its fields can be swept too); adds analytic cycles and energy.
    requant : Requant
        Inter-layer requantisation of chained runs.
    batch, seed, max_hw : int
        Of :meth:`Network.run_layers`.
    level : str, default "functional"

    Returns (when called)
    ---------------------
    dict
        ``top1``, ``float_top1``, ``agreement`` (with labels), ``sqnr_db`` (output, chained),
        ``min_layer_sqnr_db``, ``macs``, every Counts field (totals), ``clipped``, ``time_s``.
    """

    network: Network
    datapath: Datapath
    x: NDArray[np.float64] | None = None
    labels: NDArray[np.int64] | None = None
    hardware: Any = None
    requant: Requant = Requant()  # noqa: RUF009 (frozen)
    batch: int = 1
    seed: int = 0
    level: str = "functional"
    max_hw: int | None = None

    def __post_init__(self) -> None:
        _check_instance("NetworkTarget.network", self.network, Network)
        _check_common("NetworkTarget", self.datapath, self.hardware, self.level)
        _check_instance("NetworkTarget.requant", self.requant, Requant)
        check_int("NetworkTarget.batch", self.batch, 1)
        check_int("NetworkTarget.seed", self.seed, 0)
        if self.max_hw is not None:
            check_int("NetworkTarget.max_hw", self.max_hw, 1)
        if self.x is not None:
            x = as_float_array(self.x, "NetworkTarget.x")
            if x.ndim < 1 or len(x) < 1:
                raise ValueError(f"NetworkTarget.x must hold a batch of inputs, got {x.shape}")
        if self.labels is not None:
            if self.x is None:
                raise ValueError("NetworkTarget.labels needs x (the inputs they label)")
            labels = np.asarray(self.labels)
            if labels.dtype.kind not in "iu" or labels.shape != (len(self.x),):
                raise ValueError(
                    f"NetworkTarget.labels must be {len(self.x)} integers (one per input), got "
                    f"dtype {labels.dtype}, shape {labels.shape}"
                )

    def check(self, point: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if ``point`` names an unknown field or holds a bad value."""
        self._configure(point)

    def _configure(self, point: Mapping[str, Any]) -> tuple[Datapath, Any, Requant]:
        datapath, hardware, rest = apply_point(point, self.datapath, self.hardware)
        requant = self.requant
        for name in ("mult_bits", "power_of_two"):
            if name in rest:
                value = _coerce(name, getattr(requant, name), rest.pop(name))
                requant = dataclasses.replace(requant, **{name: value})
        if rest:
            raise _unknown(rest, datapath, hardware)
        return datapath, hardware, requant

    def __call__(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate one point."""
        datapath, hardware, requant = self._configure(point)
        t0 = time.perf_counter()
        out: dict[str, Any] = {}
        if self.x is not None:
            res = self.network.run(
                self.x, datapath, requant=requant, level=self.level, hardware=hardware
            )
            if self.labels is not None:
                out["top1"] = res.top1(self.labels)
                out["float_top1"] = res.float_top1(self.labels)
            out["agreement"] = res.agreement()
            out["sqnr_db"] = _sqnr_db(res.float_output, res.output)  # type: ignore[arg-type]
        else:
            res = self.network.run_layers(
                datapath,
                batch=self.batch,
                seed=self.seed,
                level=self.level,
                hardware=hardware,
                max_hw=self.max_hw,
            )
        convs = res.table[res.table["op"] == "conv"]
        out["min_layer_sqnr_db"] = float(convs["sqnr_db"].min())
        out["macs"] = int(res.table["macs"].sum())
        out.update(_counts_dict(res.totals))
        out["clipped"] = int(res.table["clipped"].sum())
        out["time_s"] = time.perf_counter() - t0
        return out


@dataclass(frozen=True, kw_only=True, eq=False)
class LayerTarget:
    """Simulate one layer on float weights and inputs at each sweep point.

    Parameters
    ----------
    layer : Conv2d or Linear
    w, x : ndarray of float
        Weights and inputs (in the units of the datapath's input format).
    datapath : Datapath
        The base datapath; sweep points replace its fields.
    bias : ndarray of float, optional
    hardware : Hardware, optional
        Adds analytic cycles and energy (:func:`shiftsim.cost.estimate`).
    level : str, default "functional"

    Returns (when called)
    ---------------------
    dict
        ``sqnr_db``, ``rmse``, ``max_abs_err`` against the float64 layer on the unquantized
        operands, ``macs``, every Counts field, ``clipped``, ``time_s``.
    """

    layer: Conv2d | Linear
    w: NDArray[np.float64]
    x: NDArray[np.float64]
    datapath: Datapath
    bias: NDArray[np.float64] | None = None
    hardware: Any = None
    level: str = "functional"

    def __post_init__(self) -> None:
        _check_instance("LayerTarget.layer", self.layer, (Conv2d, Linear))
        _check_common("LayerTarget", self.datapath, self.hardware, self.level)
        w = as_float_array(self.w, "LayerTarget.w")
        if w.shape != self.layer.weight_shape:
            raise ValueError(
                f"LayerTarget.w must have shape {self.layer.weight_shape}, got {w.shape}"
            )
        self.layer.check_input_shape(as_float_array(self.x, "LayerTarget.x").shape, "LayerTarget.x")
        if self.bias is not None:
            bias = as_float_array(self.bias, "LayerTarget.bias")
            if bias.shape != (self.layer.weight_shape[0],):
                raise ValueError(
                    f"LayerTarget.bias must have shape {(self.layer.weight_shape[0],)}, got "
                    f"{bias.shape}"
                )

    def check(self, point: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if ``point`` names an unknown field or holds a bad value."""
        datapath, hardware, rest = apply_point(point, self.datapath, self.hardware)
        if rest:
            raise _unknown(rest, datapath, hardware)

    def __call__(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate one point."""
        datapath, hardware, rest = apply_point(point, self.datapath, self.hardware)
        if rest:
            raise _unknown(rest, datapath, hardware)
        t0 = time.perf_counter()
        prep = datapath.prepare(self.layer, self.w, self.x, self.bias)
        res = datapath.run(
            self.layer, prep.code, prep.x_in, prep.bias_raw, level=self.level, hardware=hardware
        )
        counts = res.counts
        if hardware is not None and self.level != "cycle":  # the cycle model counts them
            from shiftsim.cost import estimate

            hw = estimate(
                self.layer, datapath, hardware, code=prep.code, input_shape=np.shape(self.x)
            )
            counts = dataclasses.replace(
                counts, **{k: v for k, v in dataclasses.asdict(hw).items() if not _arith(k)}
            )
        ref = conv_float(self.layer, self.w, self.x, self.bias)
        got = res.y
        out: dict[str, Any] = {
            "sqnr_db": _sqnr_db(ref, got),
            "rmse": float(np.sqrt(np.mean((ref - got) ** 2))),
            "max_abs_err": float(np.max(np.abs(ref - got))),
            "macs": self.layer.macs(np.shape(self.x)),
        }
        out.update(_counts_dict(counts))
        out["clipped"] = prep.clipped
        out["time_s"] = time.perf_counter() - t0
        return out


_ARITH = set(
    "shift_ops negations selects zero_selects adds multiplies exponent_adds compares "
    "acc_updates log_to_linear overflows".split()
)


def _arith(name: str) -> bool:
    return name in _ARITH


# ------------------------------------------------------------------------ identity
def _fingerprint(obj: Any, depth: int = 0) -> Any:
    """A canonical, JSON-able description of ``obj``: arrays by digest, objects by fields."""
    if depth > 40:
        raise ValueError("target is nested too deeply to take its identity")
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__qualname__}.{obj.name}"
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return repr(float(obj))
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        digest = hashlib.sha256(arr.view(np.uint8).reshape(-1).tobytes()).hexdigest()
        return {"ndarray": str(arr.dtype), "shape": list(arr.shape), "sha256": digest}
    if isinstance(obj, (list, tuple)):
        return [_fingerprint(v, depth + 1) for v in obj]
    if isinstance(obj, Mapping):
        return {str(k): _fingerprint(v, depth + 1) for k, v in sorted(obj.items(), key=str)}
    if isinstance(obj, functools.partial):
        return {
            "partial": _fingerprint(obj.func, depth + 1),
            "args": _fingerprint(obj.args, depth + 1),
            "keywords": _fingerprint(obj.keywords, depth + 1),
        }
    kind = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return {"type": kind, "fields": _fingerprint(fields, depth + 1)}
    if callable(obj) and hasattr(obj, "__qualname__"):  # a function or a class
        return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
    public = {k: v for k, v in getattr(obj, "__dict__", {}).items() if not k.startswith("_")}
    if public:
        return {"type": kind, "fields": _fingerprint(public, depth + 1)}
    return {"type": kind, "repr": repr(obj)}


def target_identity(target: Any, config: Mapping[str, Any] | None = None) -> str:
    """The identity of a target and its base configuration: a 16-digit hex digest.

    It covers everything that determines a point's result apart from the point: for
    :class:`NetworkTarget` and :class:`LayerTarget` the network or layer (structure and weight
    values), the inputs and labels, the base datapath and hardware, the requantisation, level,
    batch, seed and input size; for a function its module and name (pass ``config`` to
    :func:`sweep` to add what else it depends on). Arrays count by value (SHA-256 digests).

    Examples
    --------
    >>> from shiftsim.datapath.shift_add import ShiftAddDatapath
    >>> layer = Conv2d(1, 1, 1)
    >>> w, x = np.ones((1, 1, 1, 1)), np.ones((1, 1, 2, 2))
    >>> a = LayerTarget(layer=layer, w=w, x=x, datapath=ShiftAddDatapath())
    >>> b = LayerTarget(layer=layer, w=w, x=x, datapath=ShiftAddDatapath(acc_bits=8))
    >>> target_identity(a) == target_identity(b)
    False
    """
    desc = {"target": _fingerprint(target), "config": _fingerprint(dict(config or {}))}
    text = json.dumps(desc, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------ execution
def _evaluate(fn: Callable[[Point], Any], point: Point) -> tuple[bool, Any]:
    """Run one point: ``(True, metrics)`` or ``(False, "Error: message")``, never raises."""
    try:
        metrics = fn(point)
        if not isinstance(metrics, Mapping):
            raise TypeError(f"the target must return a dict, got {type(metrics).__name__}")
        return True, dict(metrics)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return False, f"{type(exc).__name__}: {first}" if first else type(exc).__name__


PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _worker_init(parent_pid: int) -> None:
    """Pool worker start-up: die with the parent process (item: no orphaned worker).

    On Linux the kernel sends SIGKILL to the worker when its parent dies (``prctl
    PR_SET_PDEATHSIG``); everywhere, a daemon thread checks every 0.2 s that the parent is
    still the one that started the worker and exits when it is not.
    """
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - no usable libc
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="shiftsim-parent-watch", daemon=True
    ).start()


def _watch_parent(parent_pid: int) -> None:  # pragma: no cover - runs in the workers
    while True:
        time.sleep(0.2)
        if os.getppid() != parent_pid:
            os._exit(1)


Outcome = tuple[Point, bool, Any]


def _run_serial(fn: Callable[[Point], Any], todo: list[Point]) -> Iterator[Outcome]:
    for point in todo:
        yield (point, *_evaluate(fn, point))


def _run_pool(
    fn: Callable[[Point], Any], todo: list[Point], workers: int | None
) -> Iterator[Outcome]:
    # spawn, not fork: forking a process whose numba threading layer (OpenMP) is running aborts
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
    ) as pool:
        pending: dict[Future[Any], Point] = {pool.submit(_evaluate, fn, p): p for p in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    point = pending.pop(fut)
                    try:
                        ok, value = fut.result()
                    except Exception as exc:  # a worker died (BrokenProcessPool), not the target
                        ok, value = False, f"{type(exc).__name__}: {exc}"
                    yield point, ok, value
        finally:
            for fut in pending:
                fut.cancel()


def _run_dask(fn: Callable[[Point], Any], todo: list[Point], client: Any) -> Iterator[Outcome]:
    from distributed import as_completed

    futures = {client.submit(_evaluate, fn, p, pure=False): i for i, p in enumerate(todo)}
    try:
        for fut in as_completed(list(futures)):
            point = todo[futures[fut]]
            try:
                ok, value = fut.result()
            except Exception as exc:  # a lost worker or a cancelled task
                ok, value = False, f"{type(exc).__name__}: {exc}"
            yield point, ok, value
    finally:
        for fut in futures:
            fut.cancel()


def _record(point: Point, key: str, config: str, ok: bool, value: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {"key": key, "config": config}
    rec.update({k: _plain(v) for k, v in point.items()})
    if not ok:
        rec["error"] = str(value)
        return rec
    for k, v in value.items():
        if k in rec or k == "error":
            rec["error"] = f"ValueError: the target returned {k!r}, a grid parameter or reserved"
            return {k2: v2 for k2, v2 in rec.items() if k2 in ("key", "config", "error", *point)}
        rec[k] = _plain(v)
    return rec


def _failed(rec: Mapping[str, Any]) -> bool:
    return isinstance(rec.get("error"), str) and bool(rec["error"])


def sweep(
    target: Callable[[Point], Mapping[str, Any]],
    grid: Mapping[str, Sequence[Any]],
    *,
    out: str | Path | None = None,
    client: Any = None,
    workers: int | None = None,
    progress: bool = True,
    config: Mapping[str, Any] | None = None,
    retry_failed: bool = False,
) -> pd.DataFrame:
    """Evaluate ``target`` at every point of ``grid``; resumable, parallel, exactly once.

    Parameters
    ----------
    target : callable
        ``point -> dict`` of metrics (picklable for processes and Dask), e.g. a
        :class:`NetworkTarget` or :class:`LayerTarget`.
    grid : dict of str -> list
        Parameter values; the sweep covers their Cartesian product.
    out : str or Path, optional
        Results file; its suffix picks the format (``.jsonl``, ``.json``, ``.csv``,
        ``.parquet``: :mod:`shiftsim.io.results`). Each finished point is stored at once;
        points already in the file are not computed again (resume). The file belongs to one
        configuration (:func:`target_identity`): a file written for another target or base
        configuration is refused, never mixed in. One sweep at a time writes a file: a second
        sweep on the same file waits for the first (an exclusive lock on ``<out>.lock``) and
        then computes only what is still missing, so no point is computed or written twice.
    client : distributed.Client, optional
        Run the points on this Dask cluster.
    workers : int, optional
        Local processes (default: the CPU count), started with ``spawn`` (the target must be
        importable: a module-level function or one of the targets here); 1 runs in this
        process. Ignored with ``client``. Workers die with the sweep's process.
    progress : bool, default True
        Show a tqdm progress bar (and say so when waiting for another sweep's lock).
    config : dict, optional
        More identity for the results file, e.g. the version of a function target's code.
    retry_failed : bool, default False
        Compute again the points recorded as failed (their records are replaced).

    Returns
    -------
    pandas.DataFrame
        One row per grid point, in grid order: the parameters, then the metrics, and an
        ``error`` column (``None`` where the point succeeded) when a point failed.

    Raises
    ------
    ValueError
        A bad grid, a point the target rejects (checked for every point before any is
        computed), an unwritable or foreign results file. A point that fails while it runs
        does not stop the sweep: it is recorded with its ``error`` (and a warning is given).

    Examples
    --------
    >>> def square(p):
    ...     return {"y": p["x"] ** 2}
    >>> sweep(square, {"x": [1, 2, 3]}, workers=1, progress=False)["y"].tolist()
    [1, 4, 9]
    """
    import pandas as pd
    from tqdm import tqdm

    if not callable(target):
        raise TypeError(f"target must be callable, got {type(target).__name__}")
    if workers is not None and (
        isinstance(workers, bool) or not isinstance(workers, int) or workers < 1
    ):
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict or None, got {type(config).__name__}")
    points = grid_points(grid)
    keys = [point_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grid holds repeated values: {grid!r}")
    check = getattr(target, "check", None)
    if callable(check):
        for point in points:  # reject a bad grid before any work
            check(point)
    ident = target_identity(target, config)
    results = None if out is None else ResultsFile(out)
    lock: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if results is not None:
        results.check_writable()

        def say_waiting() -> None:
            if progress:
                print(f"sweep: waiting for another sweep writing {out} to finish", file=sys.stderr)

        lock = results.lock(on_wait=say_waiting)
    with lock:
        records = [] if results is None else results.load()
        foreign = [r for r in records if r.get("config") != ident]
        if foreign:
            raise ValueError(
                f"results file {str(out)!r} holds {len(foreign)} result(s) of another "
                f"configuration (config {foreign[0].get('config')!r}, this sweep is {ident!r}: "
                "a different target, network, inputs, datapath, hardware, level, batch, seed "
                "or size); write to another file, or delete it to start over"
            )
        if retry_failed and any(_failed(r) for r in records):
            records = [r for r in records if not _failed(r)]
            assert results is not None
            results.rewrite(records)
        done: dict[str, dict[str, Any]] = {}
        for rec in records:
            done.setdefault(rec["key"], rec)
        todo = [p for p, k in zip(points, keys) if k not in done]
        if client is not None:
            runner = _run_dask(target, todo, client)
        elif workers == 1 or len(todo) <= 1:
            runner = _run_serial(target, todo)
        else:
            try:
                pickle.dumps(target)
            except Exception as exc:
                raise TypeError(
                    f"target must be picklable to run on processes (or pass workers=1): {exc}"
                ) from None
            runner = _run_pool(target, todo, workers)
        with tqdm(
            total=len(points),
            initial=len(points) - len(todo),
            disable=not progress,
            desc="sweep",
            unit="pt",
        ) as bar:
            for point, ok, value in runner:
                rec = _record(point, point_key(point), ident, ok, value)
                records.append(rec)
                if results is not None:
                    results.append(rec, records)
                done[rec["key"]] = rec
                bar.update(1)
    rows = [done[k] for k in keys]
    n_failed = sum(_failed(r) for r in rows)
    if n_failed:
        first = next(r["error"] for r in rows if _failed(r))
        warnings.warn(
            f"{n_failed} of {len(rows)} sweep points failed (see the 'error' column); "
            f"the first: {first}",
            RuntimeWarning,
            stacklevel=2,
        )
    frame = pd.DataFrame(rows).drop(columns=["key", "config"], errors="ignore")
    if "error" in frame.columns:
        frame = frame[[c for c in frame.columns if c != "error"] + ["error"]]
        errors = [e if isinstance(e, str) else None for e in frame["error"]]
        frame["error"] = pd.Series(errors, index=frame.index, dtype=object)
    return frame


class _CallableModule(types.ModuleType):
    """The module, callable as :func:`sweep` for code written when ``shiftsim.sweep`` was it."""

    def __call__(self, *args: Any, **kwargs: Any) -> pd.DataFrame:
        warnings.warn(
            "calling the module shiftsim.sweep is deprecated: call shiftsim.sweep.sweep(...) "
            "or shiftsim.run_sweep(...)",
            DeprecationWarning,
            stacklevel=2,
        )
        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
