"""Miyashita, Lee & Murmann (2016) on trained networks: log-domain datapaths end to end.

Every conv and fully connected layer runs on :class:`~shiftsim.datapath.log_domain.LogDatapath`
(exponent-add products, bit-accurate), activations requantised between layers in integers.

* :func:`weight_base_configs`: weights in base 2 against base sqrt(2) at 3, 4 and 5 exponent
  bits (plus a sign), activations 4-bit base-2 log codes; on every layer (``scope="all"``) or
  on the convolutions only, the fully connected layers then on an 8-bit fixed-point MAC
  datapath (``scope="conv"``: the paper's RQ5 split).
* :func:`accumulation_configs`: linear accumulation against log-domain accumulation
  (``log_add="floor"``, the paper's rule, and ``"mitchell"``), 4-bit base-2 weights.
* :func:`activation_configs`: b-bit log activations against b-bit linear activations for each
  full-scale range ``fsr``, run with ``scaling="fixed"`` (the fsr is the paper's: values clip
  at ``2**fsr``), with the same 16-bit weights (the paper's Table 1) and with each number
  system's own quantised weights.

The accumulators are 48 bits wide: the default 32 bits overflow on these receptive fields with
``acc_frac_bits = 16``; the tables report every layer's overflow and clipping rates. The
sqrt(2) constant of the split mode then has ``63 - 48 = 15`` fractional bits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from shiftsim.datapath.base import Datapath
from shiftsim.datapath.log_domain import LogDatapath
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.formats import FixedFormat, LogFormat
from shiftsim.models.mnist_family import MODELS
from shiftsim.studies.evaluate import evaluate
from shiftsim.studies.shiftcnn import evaluation_row, model_data

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ACT",
    "ACC_BITS",
    "WEIGHT_SETTINGS",
    "accumulation_configs",
    "activation_configs",
    "datapath_study",
    "weight_base_configs",
]

ACC_BITS = 48
SQRT2_FRAC_BITS = 63 - ACC_BITS
ACT = LogFormat(4, 10, base=2, signed=False)
"""Activations of the weight and accumulation studies: 4-bit base-2 log codes."""


WEIGHT_SETTINGS = ("16-bit", "quantised")
"""The weights of the activation study (see :func:`activation_configs`)."""
W16 = FixedFormat(16, 15)
ACT_FRAC_BITS = 16
"""Fractional bits of a log activation on the MAC datapath: codes below ``2**-16`` flush."""


MAC8 = FixedMacDatapath(
    weight=FixedFormat(8, 7), act=FixedFormat(8, 0, signed=False), acc_bits=ACC_BITS
)
"""The fully connected layers' datapath when only the convolutions are log-quantised."""

Config = Datapath | dict[str, Datapath]


def weight_base_configs(
    bits: Sequence[int] = (3, 4, 5), scopes: Sequence[str] = ("all", "conv")
) -> dict[tuple[Any, ...], Config]:
    """``(scope, base, bits) -> datapath(s)`` with those weights, :data:`ACT` activations.

    ``scope="conv"`` maps the layers named ``fc*`` to :data:`MAC8`.
    """
    out: dict[tuple[Any, ...], Config] = {}
    for scope in scopes:
        if scope not in ("all", "conv"):
            raise ValueError(f"scopes must hold 'all' or 'conv', got {scope!r}")
        for base in (2, "sqrt2"):
            for b in bits:
                log = LogDatapath(
                    act=ACT,
                    weight=LogFormat(b, 0, base=base),
                    acc_bits=ACC_BITS,
                    sqrt2_frac_bits=SQRT2_FRAC_BITS,
                )
                out[(scope, base, b)] = log if scope == "all" else {"fc*": MAC8, "*": log}
    return out


def accumulation_configs(log_frac_bits: Sequence[int] = (4,)) -> dict[tuple[Any, ...], Config]:
    """``(accumulate, log_add, g) -> LogDatapath``, 4-bit base-2 weights, :data:`ACT`."""
    weight = LogFormat(4, 0)
    out: dict[tuple[Any, ...], Config] = {
        ("linear", "-", "-"): LogDatapath(act=ACT, weight=weight, acc_bits=ACC_BITS)
    }
    for rule in ("floor", "mitchell"):
        for g in log_frac_bits:
            out[("log", rule, g)] = LogDatapath(
                act=ACT,
                weight=weight,
                accumulate="log",
                log_add=rule,
                log_frac_bits=g,
                acc_bits=ACC_BITS,
            )
    return out


def activation_configs(
    bits: Sequence[int] = (3, 4, 5),
    fsrs: Sequence[int] = (3, 4, 5, 6),
    weights: Sequence[str] = WEIGHT_SETTINGS,
) -> dict[tuple[Any, ...], Config]:
    """``(kind, weights, bits, fsr) -> datapath`` for ``scaling="fixed"`` runs.

    ``kind`` is ``"log"`` (b-bit base-2 log codes of full-scale range ``fsr``) or
    ``"linear"`` (``FixedFormat(b, b - fsr)``: the same range, b bits). ``weights``:

    ``"16-bit"``
        The paper's Table 1 (weights at full precision): 16-bit fixed-point weights for both
        kinds, so only the activations differ. Log activations run on
        ``FixedMacDatapath(act_log=...)``: each product is a weight shifted by the
        activation's exponent, held with :data:`ACT_FRAC_BITS` fractional bits.
    ``"quantised"``
        Each number system whole: log activations with 5-bit base-sqrt(2) log weights on
        :class:`LogDatapath` against linear activations with 6-bit fixed-point weights (both
        6 bits with the sign).
    """
    out: dict[tuple[Any, ...], Config] = {}
    for w in weights:
        if w not in WEIGHT_SETTINGS:
            raise ValueError(f"weights must hold {WEIGHT_SETTINGS}, got {w!r}")
    for w in weights:
        for b in bits:
            for fsr in fsrs:
                log = LogFormat(b, fsr, signed=False)
                linear = FixedFormat(b, b - fsr, signed=False)
                if w == "16-bit":
                    out[("linear", w, b, fsr)] = FixedMacDatapath(
                        weight=W16, act=linear, acc_bits=ACC_BITS
                    )
                    held = FixedFormat(max(1, fsr) + ACT_FRAC_BITS, ACT_FRAC_BITS, signed=False)
                    out[("log", w, b, fsr)] = FixedMacDatapath(
                        weight=W16, act=held, act_log=log, acc_bits=ACC_BITS
                    )
                else:
                    out[("linear", w, b, fsr)] = FixedMacDatapath(
                        weight=FixedFormat(6, 5), act=linear, acc_bits=ACC_BITS
                    )
                    out[("log", w, b, fsr)] = LogDatapath(
                        act=log,
                        weight=LogFormat(5, 0, base="sqrt2"),
                        acc_bits=ACC_BITS,
                        sqrt2_frac_bits=SQRT2_FRAC_BITS,
                    )
    return out


def datapath_study(
    configs: Mapping[tuple[Any, ...], Config],
    key_names: Sequence[str],
    models: Sequence[str] = tuple(MODELS),
    *,
    images: int | None = None,
    batch_size: int = 250,
    scaling: str = "calibrated",
    log: Callable[[str], Any] = print,
) -> pd.DataFrame:
    """Evaluate every model on every datapath of ``configs``; one row per (model, config).

    ``key_names`` names the parts of each config key (they become columns); ``scaling`` is
    passed to :meth:`Network.run`.
    """
    import pandas as pd

    rows = []
    for name in models:
        net, data, cal = model_data(name, images)
        for key, dp in configs.items():
            if len(key) != len(key_names):
                raise ValueError(f"config key {key!r} does not match key_names {key_names!r}")
            ev = evaluate(net, dp, data, calibration=cal, batch_size=batch_size, scaling=scaling)
            keys = dict(zip(key_names, key))
            rows.append(evaluation_row(ev, model=name, **keys))
            log(
                f"{name} {keys}: top-1 {ev.top1:.4f} (float {ev.float_top1:.4f}, drop "
                f"{ev.drop_points:.2f} points) on {ev.images} images, "
                f"{ev.images_per_s:.0f} images/s"
            )
            for w in ev.warnings():
                log(f"  {w}")
    return pd.DataFrame(rows)
