"""The paper's headline, measured: ShiftCNN vs an 8-bit fixed-point MAC datapath.

Same ResNet-18 convolution layers, same machine (``Hardware.paper()`` and ``Hardware.edge()``),
analytic model (equal to the cycle model on every count). ShiftCNN: N=2 codebooks of B=4 bits,
weights drawn from a normal distribution and quantized (zero indices counted exactly);
MAC: 8-bit weights and 8-bit activations. Both accumulate in 32 bits.

Run: ``python benchmarks/headline_shift_vs_mac.py``
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from shiftsim.cost import estimate
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.energy import EnergyTable, energy_breakdown
from shiftsim.hardware import Hardware
from shiftsim.io.topology import read_topology
from shiftsim.quantize import quantize_shiftcnn

ARITH = ("add", "multiply", "shift", "negate", "select", "log_ops")


def headline(hardware: Hardware, seed: int = 0) -> pd.DataFrame:
    """Per-datapath totals over ResNet-18's convolutions: energy parts, cycles, power."""
    rng = np.random.default_rng(seed)
    table = EnergyTable.default()
    shift, mac = ShiftAddDatapath(n_codebooks=2, bits=4), FixedMacDatapath()
    rows = []
    for tl in read_topology("resnet18", padding="same"):
        shape = (1, tl.layer.in_channels, *tl.input_hw)
        code = quantize_shiftcnn(rng.normal(size=tl.layer.weight_shape), 2, 4)
        for name, dp, c in (
            ("shift", shift, estimate(tl.layer, shift, hardware, code=code, input_shape=shape)),
            ("mac8", mac, estimate(tl.layer, mac, hardware, input_shape=shape)),
        ):
            parts = energy_breakdown(c, dp, hardware, table)
            rows.append({"layer": tl.name, "datapath": name, "cycles": c.cycles, **parts})
    df = pd.DataFrame(rows)
    total = df.groupby("datapath").sum(numeric_only=True)
    total["arithmetic"] = total[list(ARITH)].sum(axis=1)
    total["memory"] = total.drop(columns=["cycles", "arithmetic"]).sum(axis=1) - total["arithmetic"]
    total["energy_uj"] = (total["arithmetic"] + total["memory"]) * 1e-6
    total["power_mw"] = total["energy_uj"] * 1e-6 / (total["cycles"] / hardware.clock_hz) * 1e3
    return total


def main() -> None:
    for name, hw in (("paper", Hardware.paper()), ("edge", Hardware.edge())):
        t = headline(hw)
        print(f"\n== Hardware.{name}(), energy table: {EnergyTable.default().name}")
        cols = ["cycles", "arithmetic", "memory", "energy_uj", "power_mw"]
        print(t[cols].to_string(float_format=lambda v: f"{v:,.4g}"))
        r = t.loc["mac8"] / t.loc["shift"]
        print(
            f"MAC/shift ratios: energy {r['energy_uj']:.2f}x, power {r['power_mw']:.2f}x, "
            f"arithmetic energy {r['arithmetic']:.2f}x, arithmetic power "
            f"{r['arithmetic'] / r['cycles']:.2f}x, memory energy {r['memory']:.2f}x, "
            f"cycles {r['cycles']:.2f}x"
        )
        parts = t.drop(columns=["cycles", "arithmetic", "memory", "energy_uj", "power_mw"])
        print((parts.T * 1e-6).to_string(float_format=lambda v: f"{v:,.4g}"))


if __name__ == "__main__":
    main()
