"""Regenerate the papers' tables: ``python -m shiftsim.studies {shiftcnn,miyashita,weights}``.

Each command prints one line per finished cell (and any overflow or clipping warning), then the
tables in markdown; ``--out FILE.csv`` also writes every row. ``--images N`` uses the first N
test images (default: all 10,000).
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from shiftsim.models.mnist_family import MODELS
from shiftsim.studies.miyashita import WEIGHT_SETTINGS


def _names(kind: str, options: Sequence[str]) -> Callable[[str], list[str]]:
    """An argparse type: comma-separated names, each one of ``options`` (``kind`` in errors)."""

    def parse(text: str) -> list[str]:
        names = [t for t in text.split(",") if t]
        for n in names:
            if n not in options:
                raise argparse.ArgumentTypeError(
                    f"unknown {kind} {n!r}; choose from {', '.join(options)}"
                )
        return names

    return parse


def _ints(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None


def _machine() -> str:
    import numba
    import numpy as np

    return (
        f"# {platform.node()} {platform.machine()}, python {platform.python_version()}, "
        f"numpy {np.__version__}, numba {numba.__version__} ({numba.get_num_threads()} threads)"
    )


def _save(frame: Any, out: Path | None) -> None:
    if out is not None:
        frame.to_csv(out, index=False)
        print(f"wrote {out}")


def _shiftcnn(args: argparse.Namespace) -> None:
    from shiftsim.studies.shiftcnn import pivot_markdown, shiftcnn_study

    frame = shiftcnn_study(
        args.models,
        codebooks=args.codebooks,
        bits=args.bits,
        scales=args.scales.split(","),
        images=args.images,
        batch_size=args.batch,
    )
    for (model, scales), part in frame.groupby(["model", "scales"], sort=False):
        ev = part.iloc[0]
        print(
            f"\n{model}, {scales} scales: top-1 drop in points (float {100 * ev.float_top1:.2f}%,"
            f" {int(ev.images)} test images, {part['images_per_s'].mean():.0f} images/s)\n"
        )
        print(pivot_markdown(part, "N", "B"))
    _save(frame, args.out)


def _miyashita(args: argparse.Namespace) -> None:
    from shiftsim.studies import miyashita as m

    parts = []
    if "weights" in args.parts:
        f = m.datapath_study(
            m.weight_base_configs(args.bits),
            ("scope", "base", "bits"),
            args.models,
            images=args.images,
            batch_size=args.batch,
        )
        f["weights"] = f["scope"] + " base " + f["base"].astype(str)
        parts.append(
            ("weights: top-1 (%) by layers quantised, base and bits", f, "weights", "bits")
        )
    if "accumulation" in args.parts:
        f = m.datapath_study(
            m.accumulation_configs(args.log_frac_bits),
            ("accumulate", "log_add", "g"),
            args.models,
            images=args.images,
            batch_size=args.batch,
        )
        f["rule"] = f["accumulate"] + " " + f["log_add"].astype(str) + " g=" + f["g"].astype(str)
        parts.append(("accumulation: top-1 (%)", f, "model", "rule"))
    if "activations" in args.parts:
        f = m.datapath_study(
            m.activation_configs(args.bits, args.fsrs, args.weights),
            ("kind", "weights", "bits", "fsr"),
            args.models,
            images=args.images,
            batch_size=args.batch,
            scaling="fixed",
        )
        f["setting"] = (
            f["kind"] + " " + f["bits"].astype(str) + " bits, " + f["weights"] + " weights"
        )
        parts.append(("activations: top-1 (%) by fsr (fixed scaling)", f, "setting", "fsr"))
    from shiftsim.studies.shiftcnn import pivot_markdown

    for title, frame, row, col in parts:
        for model, part in frame.groupby("model", sort=False):
            part = part.assign(top1_pct=100 * part["top1"])
            print(
                f"\n{model}, {title} (float {100 * part.iloc[0].float_top1:.2f}%, "
                f"{int(part.iloc[0].images)} test images)\n"
            )
            print(pivot_markdown(part, row, col, "top1_pct"))
        _save(
            frame,
            None
            if args.out is None
            else args.out.with_stem(args.out.stem + "_" + title.split(":")[0]),
        )


def _weights(args: argparse.Namespace) -> None:
    from shiftsim.studies.weights import (
        load_efficientnet_lite0,
        weight_sqnr_study,
        weight_sqnr_summary,
    )

    weights = load_efficientnet_lite0()
    if args.limit is not None:
        weights = dict(list(weights.items())[: args.limit])
    frame = weight_sqnr_study(weights)
    summary = weight_sqnr_summary(frame)
    print(f"EfficientNet-Lite0: {len(frame)} weight tensors, {frame['params'].sum():,} weights\n")
    print("| method | median dB | min dB | weighted mean dB |\n|---|---|---|---|")
    for r in summary.itertuples():
        print(f"| {r.method} | {r.median_db:.2f} | {r.min_db:.2f} | {r.weighted_mean_db:.2f} |")
    print()
    for b in (3, 4, 5):
        for suffix in ("", "_best"):
            wins = (frame[f"sqrt2_{b}{suffix}"] > frame[f"log2_{b}{suffix}"]).mean()
            print(f"base sqrt2 beats base 2 at {b} bits{suffix}: {100 * wins:.0f}% of layers")
    _save(frame, args.out)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(prog="python -m shiftsim.studies", description=__doc__)
    sub = p.add_subparsers(dest="study", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--models", type=_names("model", list(MODELS)), default=list(MODELS))
    common.add_argument("--images", type=int, default=None, help="first N test images")
    common.add_argument("--batch", type=int, default=250, help="images per network run")
    common.add_argument("--out", type=Path, default=None, help="write the rows as CSV")
    s = sub.add_parser("shiftcnn", parents=[common], help="ShiftCNN N x B table")
    s.add_argument("--codebooks", type=_ints, default=[1, 2, 3])
    s.add_argument("--bits", type=_ints, default=[2, 3, 4, 5])
    s.add_argument("--scales", default="tensor,channel")
    m = sub.add_parser("miyashita", parents=[common], help="log-domain tables")
    m.add_argument("--parts", default="weights,accumulation,activations")
    m.add_argument("--bits", type=_ints, default=[3, 4, 5])
    m.add_argument("--fsrs", type=_ints, default=[3, 4, 5, 6])
    m.add_argument(
        "--weights",
        type=_names("weights", WEIGHT_SETTINGS),
        default=["16-bit", "quantised"],
        help="weights of the activation study: 16-bit (both kinds) and/or quantised",
    )
    m.add_argument(
        "--log-frac-bits", type=_ints, default=[4, 10], help="g of log-domain accumulation"
    )
    w = sub.add_parser("weights", help="EfficientNet-Lite0 per-layer weight SQNR")
    w.add_argument("--out", type=Path, default=None, help="write the per-layer rows as CSV")
    w.add_argument("--limit", type=int, default=None, help="only the first N weight tensors")
    args = p.parse_args(argv)
    print(_machine())
    {"shiftcnn": _shiftcnn, "miyashita": _miyashita, "weights": _weights}[args.study](args)
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
