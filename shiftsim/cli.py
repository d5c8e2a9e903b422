"""The ``shiftsim`` command line: simulate, sweep, verify, report.

Examples
--------
Per-layer table of the built-in digits CNN at N = 2 codebooks, B = 4 bits::

    shiftsim simulate --model digits --codebooks 2 --bits 4

Every ResNet-18 layer on seeded random inputs, with cycles and energy, saved as CSV::

    shiftsim simulate --topology resnet18 --hardware edge --csv resnet18.csv

A resumable sweep, then its plot::

    shiftsim sweep --model digits --grid n_codebooks=1,2,3 --grid bits=2,3,4 --out digits.jsonl
    shiftsim report digits.jsonl --x bits --y top1 --hue n_codebooks --plot digits.png

Bad flags and bad files print one ``shiftsim: error: ...`` line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

__all__ = ["main"]

_TABLE_COLUMNS = [
    "layer",
    "op",
    "datapath",
    "shape",
    "macs",
    "shift_ops",
    "selects",
    "adds",
    "multiplies",
    "requant_mults",
    "exponent_adds",
    "overflows",
    "clipped",
    "overflow_rate",
    "clip_rate",
    "float_ops",
    "cycles",
    "energy_pj",
    "sqnr_db",
    "time_s",
]


_GOLDEN_ENV = "SHIFTSIM_GOLDEN_LIMIT_S"


class CliError(Exception):
    """A user error: reported as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit status 2."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


_TRAINED = ("fmnist_vgg", "fmnist_resnet", "mnist_lenet")
_TRAINED_IMAGES = 500


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def _add_source(p: argparse.ArgumentParser, required: bool = True) -> None:
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument(
        "--topology",
        metavar="NAME|FILE",
        help="SCALE-Sim topology: resnet18, alexnet, googlenet, mobilenet, "
        "yolo_tiny, or a CSV file",
    )
    src.add_argument("--onnx", metavar="FILE", type=Path, help="ONNX model")
    src.add_argument(
        "--model",
        choices=["digits", *_TRAINED],
        help="built-in model: the digits CNN, or a trained 28x28 CNN (Fashion-MNIST: "
        "fmnist_vgg, fmnist_resnet; MNIST: mnist_lenet; needs the data set installed)",
    )
    p.add_argument(
        "--weights",
        metavar="FILE.npz",
        type=Path,
        help="weights by layer name (topology) or the digits weights file",
    )
    p.add_argument(
        "--padding",
        choices=["none", "same"],
        default="none",
        help="topology padding (SCALE-Sim: none)",
    )
    p.add_argument(
        "--images",
        type=_positive,
        default=None,
        help="built-in models: simulate the first N test images (default: all 360 of digits, "
        f"{_TRAINED_IMAGES} of the others)",
    )
    p.add_argument("--batch", type=_positive, default=1, help="topology/ONNX: inputs per layer")
    p.add_argument(
        "--max-size",
        type=_positive,
        default=None,
        metavar="N",
        help="topology/ONNX: crop every layer's input to at most N x N (quick look)",
    )
    p.add_argument(
        "--seed", type=_non_negative, default=0, help="seed of weights and random inputs (>= 0)"
    )


def _add_datapath(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("datapath")
    g.add_argument("--datapath", choices=["shift", "log", "mac"], default="shift")
    g.add_argument("--codebooks", type=_positive, default=2, help="shift: N (default 2)")
    g.add_argument(
        "--bits",
        type=_positive,
        default=4,
        help="shift: B per index (default 4); log/mac: weight bits",
    )
    g.add_argument("--acc-bits", type=_positive, default=32, help="accumulator width")
    g.add_argument("--overflow", choices=["wrap", "sat"], default="wrap")
    g.add_argument("--level", choices=["functional", "golden", "cycle"], default="functional")
    g.add_argument(
        "--hardware",
        choices=["none", "tiny", "edge", "paper"],
        default="none",
        help="add analytic cycles and energy for this machine",
    )
    g.add_argument(
        "--dataflow",
        choices=["auto", "os", "ws"],
        default="auto",
        help="with --hardware: output-stationary, weight-stationary, or the lower-energy one",
    )
    g.add_argument(
        "--power-of-two", action="store_true", help="requantise between layers by shifts only"
    )
    g.add_argument(
        "--scaling",
        choices=["calibrated", "fixed"],
        default="calibrated",
        help="activation scales: calibrated (each tensor's peak at the top of its format) or "
        "fixed at 1 (the format's full-scale range, e.g. a log fsr, decides what clips)",
    )
    g.add_argument(
        "--golden-limit",
        type=_seconds,
        default=None,
        metavar="S",
        help="refuse a golden-level layer estimated to run longer than S seconds "
        "(default 600; inf: no limit)",
    )


def _add_network_command(
    sub: Any, name: str, *, help: str, description: str
) -> argparse.ArgumentParser:
    """A subcommand that runs a network (source options) on a datapath (datapath options)."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description)
    _add_source(p)
    _add_datapath(p)
    return p


def _build_parser() -> _Parser:
    parser = _Parser(prog="shiftsim", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = _add_network_command(
        sub,
        "simulate",
        help="per-layer report of a network on a datapath",
        description="Simulate a network layer by layer and print a table.",
    )
    p.add_argument(
        "--datapaths",
        type=Path,
        metavar="FILE.toml",
        help="per-layer datapaths: [[layer]] entries with match = PATTERN (or @first, @last) "
        "and datapath, codebooks, bits, acc_bits, overflow; other layers use the flags",
    )
    p.add_argument(
        "--input",
        type=Path,
        metavar="X.npy",
        help="ONNX: run the whole network bit-accurately on these inputs, (B, *input_shape) "
        "floats (default: every layer on its own random input)",
    )
    p.add_argument("--csv", type=Path, metavar="OUT", help="also write the table as CSV")
    p.add_argument("--json", type=Path, metavar="OUT", help="also write the table as JSON")

    p = _add_network_command(
        sub,
        "sweep",
        help="resumable parameter sweep",
        description="Sweep datapath/hardware parameters over a grid.",
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="a parameter and its values (repeat the flag)",
    )
    p.add_argument(
        "--grid-file",
        type=Path,
        metavar="FILE.toml",
        help="TOML file of NAME = [values] (top level or a [grid] table)",
    )
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="results file; the suffix picks the format: .jsonl, .json, .csv, .parquet",
    )
    p.add_argument(
        "--retry-failed", action="store_true", help="compute again the points that failed"
    )
    p.add_argument("--workers", type=_positive, default=None, help="local processes")
    p.add_argument("--dask", metavar="ADDRESS", help="Dask scheduler address")
    p.add_argument("--no-progress", action="store_true")

    p = _add_network_command(
        sub,
        "verify",
        help="golden vs functional vs float on one layer",
        description="Run one layer at the golden and functional levels (and "
        "cycle with --cycle) and compare with float64.",
    )
    p.add_argument("--layer", help="layer name (default: the first)")
    p.add_argument(
        "--size",
        type=_positive,
        default=6,
        help="crop the input to at most SIZE x SIZE (the golden model is slow)",
    )
    p.add_argument("--cycle", action="store_true", help="also run the cycle-level model")

    p = sub.add_parser(
        "report",
        help="tables and plots from a results file",
        description="Print a sweep results file (.jsonl, .json, .csv, .parquet) or a "
        "simulate table (.csv, .json), optionally plot it.",
    )
    p.add_argument("file", type=Path)
    p.add_argument("--x", help="x-axis column (plot)")
    p.add_argument("--y", help="y-axis column (plot)")
    p.add_argument("--hue", help="one line per value of this column (plot)")
    p.add_argument(
        "--kind",
        choices=["line", "pareto", "layers"],
        default=None,
        help="plot kind (default: line for sweeps, layers for simulate tables)",
    )
    p.add_argument("--plot", type=Path, metavar="OUT.png", help="write a figure")

    from shiftsim.rtl.command import add_rtl_commands

    add_rtl_commands(sub)  # vectors, synth
    return parser


def _version() -> str:
    from shiftsim import __version__

    return f"shiftsim {__version__}"


# ------------------------------------------------------------------------ helpers
_DATAPATH_KEYS = ("datapath", "codebooks", "bits", "acc_bits", "overflow")


def _datapath(args: argparse.Namespace, **override: Any) -> Any:
    """The datapath the flags describe, ``override`` replacing some of them."""
    from shiftsim.formats import FixedFormat, LogFormat, Overflow

    opt = {key: override.get(key, getattr(args, key)) for key in _DATAPATH_KEYS}
    overflow = Overflow[opt["overflow"].upper()]
    if opt["datapath"] == "shift":
        from shiftsim.datapath.shift_add import ShiftAddDatapath

        return ShiftAddDatapath(
            n_codebooks=opt["codebooks"],
            bits=opt["bits"],
            acc_bits=opt["acc_bits"],
            overflow=overflow,
        )
    if opt["datapath"] == "log":
        from shiftsim.datapath.log_domain import LogDatapath

        return LogDatapath(
            weight=LogFormat(opt["bits"], 0, signed=True),
            acc_bits=opt["acc_bits"],
            overflow=overflow,
        )
    from shiftsim.datapath.mac import FixedMacDatapath

    return FixedMacDatapath(
        weight=FixedFormat(opt["bits"], opt["bits"] - 1),
        acc_bits=opt["acc_bits"],
        overflow=overflow,
    )


def _layer_datapaths(args: argparse.Namespace, net: Any) -> Any:
    """The datapath, or with ``--datapaths`` a ``{pattern: datapath}`` mapping for the network.

    Each ``[[layer]]`` entry of the TOML file has ``match`` (a layer-name pattern, or
    ``@first`` / ``@last``) and any of ``datapath``, ``codebooks``, ``bits``, ``acc_bits``,
    ``overflow`` (as the flags; the flags' values otherwise). Layers no entry matches run on
    the flags' datapath.
    """
    default = _datapath(args)
    if args.datapaths is None:
        return default
    entries = _read_toml(args.datapaths, "datapaths").get("layer")
    path = args.datapaths
    if not isinstance(entries, list) or not entries:
        raise CliError(f'{path}: expected [[layer]] entries with match = "PATTERN"')
    choices = {"datapath": ("shift", "log", "mac"), "overflow": ("wrap", "sat")}
    mapping: dict[str, Any] = {}
    for i, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("match"), str):
            raise CliError(f'{path}: layer entry {i} needs match = "PATTERN"')
        unknown = sorted(set(entry) - {"match", *_DATAPATH_KEYS})
        if unknown:
            raise CliError(
                f"{path}: layer entry {i} ({entry['match']!r}): unknown keys {unknown}; "
                f"allowed: match, {', '.join(_DATAPATH_KEYS)}"
            )
        for key, value in entry.items():
            if key in choices and value not in choices[key]:
                raise CliError(
                    f"{path}: {entry['match']!r}: {key} must be one of "
                    f"{list(choices[key])}, got {value!r}"
                )
            if key in ("codebooks", "bits", "acc_bits") and (
                not isinstance(value, int) or isinstance(value, bool) or value < 1
            ):
                raise CliError(
                    f"{path}: {entry['match']!r}: {key} must be a positive integer, got {value!r}"
                )
        if entry["match"] in mapping:
            raise CliError(f"{path}: pattern {entry['match']!r} given twice")
        mapping[entry["match"]] = _datapath(
            args, **{k: v for k, v in entry.items() if k != "match"}
        )
    from shiftsim.network.runner import resolve_datapaths

    try:
        resolve_datapaths(net, mapping)
        return mapping  # the file covers every layer
    except ValueError as exc:
        if not str(exc).startswith("datapath: no pattern matches"):
            raise CliError(f"{path}: {exc}") from None
    full = {**mapping, "*": default}
    try:
        resolve_datapaths(net, full)
    except ValueError as exc:
        raise CliError(f"{path}: {exc}") from None
    return full


def _hardware(args: argparse.Namespace) -> Any:
    if args.hardware == "none":
        return None
    from shiftsim.hardware import Hardware

    return getattr(Hardware, args.hardware)().replace(dataflow=args.dataflow)


def _source(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """(network, x, labels): x and labels only for the digits model."""
    from shiftsim.network import Network

    if args.model == "digits":
        from shiftsim.models.digits import digits_network, digits_test_split

        net = digits_network(args.weights)
        x, y = digits_test_split(args.weights)
        if args.images is not None:
            x, y = x[: args.images], y[: args.images]
        return net, x, y
    if args.model in _TRAINED:
        from shiftsim.models.mnist_family import load_model, model_test_set

        try:
            data = model_test_set(args.model).head(args.images or _TRAINED_IMAGES)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        return load_model(args.model), data.images / 255.0, data.labels
    if args.onnx is not None:
        from shiftsim.io.onnx_io import read_onnx

        return read_onnx(args.onnx), None, None
    _check_memory(args)
    return (
        Network.from_topology(
            args.topology, seed=args.seed, weights=args.weights, padding=args.padding
        ),
        None,
        None,
    )


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _check_memory(args: argparse.Namespace) -> None:
    """Refuse a topology whose largest layer cannot be held in memory, before allocating it."""
    from shiftsim.io.topology import read_topology

    if args.command == "verify":
        batch, max_hw, flag = 1, args.size, "--size"
    else:
        batch, max_hw, flag = args.batch, args.max_size, "--max-size"
    memory = _physical_memory()
    if memory is None:
        return
    for t in read_topology(args.topology, args.padding):
        need = t.memory_bytes(batch, max_hw)
        if need > memory:
            h, w = t.input_hw
            raise CliError(
                f"{args.topology}: layer {t.name!r} (input {batch}x{t.layer.in_channels}x{h}x{w}"
                f", weights {'x'.join(map(str, t.layer.weight_shape))}) needs about "
                f"{_bytes(need)}, more than this machine's {_bytes(memory)} of memory; "
                f"crop the inputs with {flag} N"
            )


def _bytes(n: int) -> str:
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def _print_table(frame: Any, columns: Sequence[str] | None = None) -> None:
    import pandas as pd

    if columns is not None:
        frame = frame[[c for c in columns if c in frame.columns]]
        frame = frame.loc[:, [c for c in frame.columns if not _all_zero(frame[c])]]
    with pd.option_context(
        "display.max_rows",
        500,
        "display.max_columns",
        50,
        "display.width",
        200,
        "display.float_format",
        "{:.4g}".format,
    ):
        print(frame.to_string(index=False))


def _all_zero(col: Any) -> bool:
    return col.dtype.kind in "iuf" and bool((col == 0).all()) and col.name not in ("macs",)


def _parse_grid(args: argparse.Namespace) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    if args.grid_file is not None:
        grid.update(_read_grid_file(args.grid_file))
    for item in args.grid:
        name, sep, values = item.partition("=")
        name = name.strip()
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not name or not vals:
            raise CliError(f"--grid expects NAME=V1,V2,..., got {item!r}")
        grid[name] = [_scalar(v) for v in vals]
    if not grid:
        raise CliError("sweep needs at least one --grid NAME=V1,V2,... or a --grid-file")
    return grid


def _scalar(text: str) -> Any:
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text


def _read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        import tomllib
    except ImportError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(f"{path}: cannot read {what} file: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"{path}: not a valid TOML {what} file: {exc}") from None


def _read_grid_file(path: Path) -> dict[str, list[Any]]:
    data = _read_toml(path, "grid")
    table = data.get("grid", data)
    if not isinstance(table, dict) or not table:
        raise CliError(f"{path}: expected NAME = [values] entries (top level or in [grid])")
    out = {}
    for name, values in table.items():
        if not isinstance(values, list) or not values:
            raise CliError(f"{path}: {name} must be a non-empty list, got {values!r}")
        out[name] = values
    return out


def _read_input(path: Path, net: Any) -> Any:
    """Network inputs from an .npy file: ``(B, *input_shape)`` or one ``input_shape`` input."""
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise CliError(f"{path}: cannot read inputs: {exc}") from None
    if not isinstance(x, np.ndarray):  # an .npz archive
        x.close()
        raise CliError(f"{path}: cannot read inputs: an .npz archive, expected one .npy array")
    if x.dtype.kind not in "fiu":
        raise CliError(f"{path}: inputs must be real numbers, got dtype {x.dtype}")
    if x.shape == net.input_shape:
        x = x[None]
    if x.shape[1:] != net.input_shape:
        raise CliError(
            f"{path}: inputs must have shape (B, *{net.input_shape}), got {tuple(x.shape)}"
        )
    x = x.astype(np.float64)
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        index = tuple(int(i) for i in bad[0])
        raise CliError(f"{path}: inputs must be finite, got {x[index]} at index {index}")
    return x


# ------------------------------------------------------------------------ commands
def _check_out(flag: str, path: Path | None) -> None:
    """Refuse an output path that cannot be written, before any work."""
    if path is None:
        return
    if path.is_dir():
        raise CliError(f"{flag} {path}: is a directory")
    if not path.parent.is_dir():
        raise CliError(f"{flag} {path}: cannot write: no such folder {str(path.parent)!r}")


def _cmd_simulate(args: argparse.Namespace) -> int:
    from shiftsim.network import Requant
    from shiftsim.network.report import RangeWarning

    _check_out("--csv", args.csv)
    _check_out("--json", args.json)
    net, x, y = _source(args)
    dp = _layer_datapaths(args, net)
    hw = _hardware(args)
    if args.input is not None:
        if args.onnx is None:
            raise CliError("--input needs --onnx (the digits model has its own test images)")
        x = _read_input(args.input, net)
    if x is not None:
        with warnings.catch_warnings():  # printed below, after the table
            warnings.simplefilter("ignore", RangeWarning)
            res = net.run(
                x,
                dp,
                level=args.level,
                hardware=hw,
                requant=Requant(power_of_two=args.power_of_two),
                scaling=args.scaling,
            )
    else:
        res = net.run_layers(
            dp,
            batch=args.batch,
            seed=args.seed,
            level=args.level,
            hardware=hw,
            max_hw=args.max_size,
        )
    if isinstance(dp, dict):
        print(f"{net.name}: per-layer datapaths from {args.datapaths} (column 'datapath')")
    else:
        print(f"{net.name}: {dp!r}")
    if x is not None and args.onnx is not None:
        fmt = res.extra["input_format"]
        print(
            f"input: {len(x)} x {net.input_shape}, {'signed' if fmt.signed else 'unsigned'} "
            f"{fmt.bits}-bit, {res.extra['input_clipped']} values clipped"
        )
    _print_table(res.table, _TABLE_COLUMNS)
    t = res.table
    total = f"total: {int(t['macs'].sum()):,} MACs, {res.totals.adds:,} adds"
    if hw is not None:
        total += f", {res.totals.cycles:,} cycles, {res.totals.energy_pj / 1e6:.4g} uJ"
    total += f", {t['time_s'].sum():.2f} s"
    print(total)
    if y is not None:
        print(
            f"top-1: {res.top1(y):.4f} (float {res.float_top1(y):.4f}, "
            f"agreement {res.agreement():.4f}) on {len(y)} test images"
        )
    for line in res.warnings():
        print(line, file=sys.stderr)
    for path, kind in ((args.csv, "csv"), (args.json, "json")):
        if path is not None:
            try:
                if kind == "csv":
                    t.to_csv(path, index=False)
                else:
                    t.to_json(path, orient="records", indent=1)
            except OSError as exc:
                raise CliError(f"{path}: cannot write: {exc.strerror or exc}") from None
            print(f"wrote {path}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from shiftsim.io.results import ResultsFile
    from shiftsim.network import Requant
    from shiftsim.sweep import NetworkTarget, grid_points, sweep

    grid = _parse_grid(args)
    net, x, y = _source(args)
    target = NetworkTarget(
        network=net,
        datapath=_datapath(args),
        x=x,
        labels=y,
        hardware=_hardware(args),
        batch=args.batch,
        max_hw=args.max_size,
        seed=args.seed,
        level=args.level,
        requant=Requant(power_of_two=args.power_of_two),
    )
    for point in grid_points(grid):  # validate every point before any work
        target.check(point)
    ResultsFile(args.out).check_writable()
    client = None
    if args.dask:
        from distributed import Client

        client = Client(args.dask)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # failed points: said below
            frame = sweep(
                target,
                grid,
                out=args.out,
                client=client,
                workers=args.workers,
                progress=not args.no_progress,
                retry_failed=args.retry_failed,
            )
    finally:
        if client is not None:
            client.close()
    cols = [
        *grid,
        "top1",
        "agreement",
        "sqnr_db",
        "min_layer_sqnr_db",
        "adds",
        "shift_ops",
        "multiplies",
        "cycles",
        "energy_pj",
        "overflows",
        "error",
    ]
    _print_table(frame, cols)
    print(f"{len(frame)} points in {args.out}")
    if "error" in frame.columns:
        failed = frame["error"].notna()
        sys.stderr.write(
            f"shiftsim sweep: {int(failed.sum())} of {len(frame)} points failed (see the "
            f"error column; --retry-failed computes them again); the first: "
            f"{frame['error'][failed].iloc[0]}\n"
        )
        return 1
    return 0


def _cmd_verify(args: argparse.Namespace) -> int:
    from shiftsim.verify import simulate

    net = _source(args)[0]
    dp = _datapath(args)
    nodes = net.conv_nodes
    node = (
        nodes[0] if args.layer is None else next((n for n in nodes if n.name == args.layer), None)
    )
    if node is None:
        raise CliError(f"--layer: no layer {args.layer!r} (layers: {[n.name for n in nodes]})")
    shape = net.layer_input_shapes(1, args.size)[node.name]
    from shiftsim.network import act_format, weight_gain

    act = act_format(dp)
    rng = np.random.default_rng(args.seed)
    xin = np.maximum(rng.standard_normal(shape) * act.max_raw * act.lsb / 4, 0.0)
    levels = ["functional", "golden"] + (["cycle"] if args.cycle else [])
    weight = node.conv_weight  # what the datapath runs (a ConvTranspose's equivalent conv)
    gain = weight_gain(dp, weight)
    bias = None if node.bias is None else node.bias * gain
    sims = {lv: simulate(node.layer, weight * gain, xin, dp, bias=bias, level=lv) for lv in levels}
    base = sims["functional"].result
    print(f"layer {node.name}: {node.layer!r}, input {tuple(shape)}, {dp!r}")
    ok = True
    for lv in levels[1:]:
        r = sims[lv].result
        same = np.array_equal(r.y_raw, base.y_raw)
        counts_same = _arith_equal(r.counts, base.counts)
        ok &= same and counts_same
        print(
            f"{lv} == functional: outputs {'identical' if same else 'DIFFER'}"
            f" ({base.y_raw.size} values), counts {'identical' if counts_same else 'DIFFER'}"
        )
    s = sims["functional"].stats
    print(
        f"vs float64: sqnr {s.sqnr_db:.2f} dB, rmse {s.rmse:.4g}, max |error| "
        f"{s.max_abs_error_lsb:.4g} LSB against the dequantized operands, bit-exact "
        f"{s.bit_exact_fraction:.4f}"
    )
    return 0 if ok else 1


def _arith_equal(a: Any, b: Any) -> bool:
    from shiftsim.sweep import _ARITH

    return all(getattr(a, k) == getattr(b, k) for k in _ARITH)


def _cmd_report(args: argparse.Namespace) -> int:

    path = args.file
    frame = _read_report(path)
    if frame.empty:
        raise CliError(f"{path}: no results")
    is_layers = "layer" in frame.columns
    _print_table(frame, _TABLE_COLUMNS if is_layers else None)
    if args.plot is None:
        return 0
    from shiftsim import plots

    kind = args.kind or ("layers" if is_layers else "line")
    for name in (args.x, args.y, args.hue):
        if name is not None and name not in frame.columns:
            raise CliError(f"no column {name!r} in {path} (columns: {', '.join(frame.columns)})")
    if kind == "layers":
        fig = plots.layer_costs(frame, column=args.y or "adds")
    elif kind == "pareto":
        fig = plots.pareto(frame, x=args.x or "adds", y=args.y or "sqnr_db", label=args.hue)
    else:
        if args.x is None or args.y is None:
            raise CliError("a line plot needs --x and --y")
        fig = plots.metric_vs(frame, x=args.x, y=args.y, hue=args.hue)
    try:
        fig.savefig(args.plot, dpi=120)
    except (OSError, ValueError) as exc:
        raise CliError(f"{args.plot}: cannot write the figure: {exc}") from None
    print(f"wrote {args.plot}")
    return 0


def _read_report(path: Path) -> Any:
    """A sweep results file (any format) or a ``simulate`` table (CSV, JSON) as a DataFrame."""
    import pandas as pd

    from shiftsim.io.results import read_results, results_format

    if path.is_dir():
        raise CliError(f"{path}: is a directory, not a results file")
    if not path.exists():
        raise CliError(f"{path}: no such file")
    fmt = results_format(path)  # an unknown suffix: one clear line
    head = path.read_bytes()[:64].lstrip()
    try:
        if fmt == "csv" and head.startswith(b"{"):
            raise ValueError("holds JSON, not CSV (a results file of an older shiftsim?)")
        if fmt == "csv" and not head.startswith(b"key,"):
            frame = pd.read_csv(path)  # a simulate table
        elif fmt == "json" and head.startswith(b"[") and b'"key"' not in head:
            frame = pd.read_json(path, orient="records")  # a simulate table
        else:
            frame = pd.DataFrame(read_results(path))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CliError(f"{path}: cannot read results: {first}") from None
    return frame.drop(columns=["key", "config"], errors="ignore")


_COMMANDS = {
    "simulate": _cmd_simulate,
    "sweep": _cmd_sweep,
    "verify": _cmd_verify,
    "report": _cmd_report,
    "vectors": lambda args: _rtl_command("run_vectors", args),
    "synth": lambda args: _rtl_command("run_synth", args),
}


def _rtl_command(name: str, args: argparse.Namespace) -> int:
    from shiftsim.rtl import command

    return int(getattr(command, name)(args))


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    """Warnings as one ``shiftsim: warning: ...`` line, without the source line."""
    sys.stderr.write(f"shiftsim: warning: {message}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status.

    0 ok, 1 verification failed or sweep points failed (recorded), 2 a user error.
    """
    parser = _build_parser()
    args = parser.parse_args(argv)
    limit = getattr(args, "golden_limit", None)
    saved = os.environ.get(_GOLDEN_ENV)
    if limit is not None:  # read by Datapath.run, here and in sweep workers
        os.environ[_GOLDEN_ENV] = repr(limit)
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _COMMANDS[args.command](args)
    except (CliError, ValueError, TypeError, KeyError, OSError, ImportError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if isinstance(exc, ImportError) and exc.name:
            message = f"this needs the {exc.name!r} package: pip install 'shiftsim[all]'"
        if isinstance(exc, OSError) and exc.strerror:
            message = f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
        sys.stderr.write(f"shiftsim {args.command}: error: {message}\n")
        return 2
    except MemoryError:
        sys.stderr.write(
            f"shiftsim {args.command}: error: out of memory (crop the inputs with --max-size N, "
            "or use a smaller --batch)\n"
        )
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("shiftsim: interrupted\n")
        return 130
    finally:
        if saved is None:
            os.environ.pop(_GOLDEN_ENV, None)
        else:
            os.environ[_GOLDEN_ENV] = saved


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
