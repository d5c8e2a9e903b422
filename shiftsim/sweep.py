"""Parameter sweeps: grids of datapath or hardware options -> a table, resumable, in parallel.

:func:`sweep` evaluates a target at every point of a grid (the Cartesian product of the values
given for each parameter) on local processes (default), in this process, or on a Dask cluster
(pass a ``distributed.Client``). Each finished point is appended to a JSON-lines results file at
once (one object per line, flushed and synced), so an interrupted sweep loses nothing finished;
run the same call again and it computes only the missing points, each exactly once.

Targets: any picklable callable ``point -> dict`` (``point`` maps parameter names to values), or
:class:`NetworkTarget` / :class:`LayerTarget`, which apply the point to a base datapath (and
hardware) and simulate a network or a layer.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.counts import Counts
from shiftsim.datapath.base import Datapath
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

    def __call__(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """Evaluate one point."""
        datapath, hardware, rest = apply_point(point, self.datapath, self.hardware)
        requant = self.requant
        for name in ("mult_bits", "power_of_two"):
            if name in rest:
                value = _coerce(name, getattr(requant, name), rest.pop(name))
                requant = dataclasses.replace(requant, **{name: value})
        if rest:
            raise _unknown(rest, datapath, hardware)
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


# ------------------------------------------------------------------------ results file
def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results file (JSON lines); a torn last line (a crash mid-write) is skipped.

    Raises
    ------
    ValueError
        If a line other than the last is not a JSON object with a ``key``.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read results file: {exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a results file (not UTF-8 text)") from None
    records = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict) or "key" not in rec:
                raise ValueError("no key")
        except ValueError:
            if i == len(lines):
                continue  # torn last line
            raise ValueError(
                f"{path}: line {i}: not a sweep result (JSON object with key)"
            ) from None
        records.append(rec)
    return records


def _repair(path: Path) -> None:
    """Drop a torn last line so that appends start on a fresh line."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(cut)


def _append(path: Path, record: dict[str, Any]) -> None:
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=False) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def _record(point: Point, key: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(metrics, Mapping):
        raise TypeError(f"the target must return a dict, got {type(metrics).__name__}")
    rec: dict[str, Any] = {"key": key}
    rec.update({k: _plain(v) for k, v in point.items()})
    for k, v in metrics.items():
        if k in rec:
            raise ValueError(f"the target returned {k!r}, which is a grid parameter or 'key'")
        rec[k] = _plain(v)
    return rec


# ------------------------------------------------------------------------ execution
def _run_serial(fn: Callable[[Point], Any], todo: list[Point]) -> Iterator[tuple[Point, Any]]:
    for point in todo:
        yield point, fn(point)


def _run_pool(
    fn: Callable[[Point], Any], todo: list[Point], workers: int | None
) -> Iterator[tuple[Point, Any]]:
    # spawn, not fork: forking a process whose numba threading layer (OpenMP) is running aborts
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: dict[Future[Any], Point] = {pool.submit(fn, p): p for p in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    point = pending.pop(fut)
                    yield point, fut.result()
        finally:
            for fut in pending:
                fut.cancel()


def _run_dask(
    fn: Callable[[Point], Any], todo: list[Point], client: Any
) -> Iterator[tuple[Point, Any]]:
    from distributed import as_completed

    futures = {client.submit(fn, p, pure=False): i for i, p in enumerate(todo)}
    try:
        for fut in as_completed(list(futures)):
            yield todo[futures[fut]], fut.result()
    finally:
        for fut in futures:
            fut.cancel()


def sweep(
    target: Callable[[Point], Mapping[str, Any]],
    grid: Mapping[str, Sequence[Any]],
    *,
    out: str | Path | None = None,
    client: Any = None,
    workers: int | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Evaluate ``target`` at every point of ``grid``; resumable, parallel.

    Parameters
    ----------
    target : callable
        ``point -> dict`` of metrics (picklable for processes and Dask), e.g. a
        :class:`NetworkTarget` or :class:`LayerTarget`.
    grid : dict of str -> list
        Parameter values; the sweep covers their Cartesian product.
    out : str or Path, optional
        JSON-lines results file. Each finished point is appended at once; points already in
        the file are not computed again (resume), and none is written twice.
    client : distributed.Client, optional
        Run the points on this Dask cluster.
    workers : int, optional
        Local processes (default: the CPU count), started with ``spawn`` (the target must be
        importable: a module-level function or one of the targets here); 1 runs in this
        process. Ignored with ``client``.
    progress : bool, default True
        Show a tqdm progress bar.

    Returns
    -------
    pandas.DataFrame
        One row per grid point, in grid order: the parameters, then the metrics.

    Raises
    ------
    ValueError
        A bad grid or results file, or a point the target rejects (the points finished before
        it stay in the results file).

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
    points = grid_points(grid)
    keys = [point_key(p) for p in points]
    if len(set(keys)) != len(keys):
        raise ValueError(f"grid holds repeated values: {grid!r}")
    done: dict[str, dict[str, Any]] = {}
    path = None if out is None else Path(out)
    if path is not None and path.exists():
        for rec in read_results(path):
            done.setdefault(rec["key"], rec)
        _repair(path)
    todo = [p for p, k in zip(points, keys) if k not in done]
    if client is not None:
        runner = _run_dask(target, todo, client)
    elif workers == 1 or len(todo) <= 1:
        runner = _run_serial(target, todo)
    else:
        runner = _run_pool(target, todo, workers)
    with tqdm(
        total=len(points),
        initial=len(points) - len(todo),
        disable=not progress,
        desc="sweep",
        unit="pt",
    ) as bar:
        for point, metrics in runner:
            key = point_key(point)
            rec = _record(point, key, metrics)
            if path is not None:
                _append(path, rec)
            done[key] = rec
            bar.update(1)
    rows = [done[k] for k in keys]
    frame = pd.DataFrame(rows).drop(columns="key")
    return frame
