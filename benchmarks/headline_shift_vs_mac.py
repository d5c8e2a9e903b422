"""The paper's headline, re-measured: ShiftCNN vs an 8-bit fixed-point MAC datapath.

ResNet-18 and AlexNet convolutions (SCALE-Sim topologies, ``padding="same"``), batch 1, on
every preset (``Hardware.paper()``, ``edge()``, ``tiny()``) with the ``auto`` dataflow, the
analytic model (equal to the cycle model on every count). ShiftCNN: N=2 codebooks of B=4 bits,
weights drawn from a normal distribution and quantized (zero indices counted exactly); MAC:
8-bit weights and activations. Both accumulate in 32 bits. Energies from the default table.

Ratios MAC / shift of the energy of
(a) arithmetic: adds, multiplies, the shift unit's shifts and negations, selections;
(b) datapath: (a) plus the multicast wires and the units' registers (weight register files,
    partial sums) -- what the lanes spend;
(b') datapath and shift buffer: (b) plus the shift buffer, the store ShiftCNN adds;
(c) on chip: every component but DRAM;  (d) whole chip: with DRAM.

Sensitivity (ResNet-18 on ``Hardware.paper()``): the whole-chip ratio against the DRAM
energy per byte, with the shift buffer priced as an SRAM of its capacity (the preset's) or
as a 1 KiB register file read (P-1) words at a time; saved to
``notebooks/figures/headline_sensitivity.png``, with the per-component breakdown per MAC
(``notebooks/figures/energy_breakdown_resnet18.png``).

Run: ``python benchmarks/headline_shift_vs_mac.py`` (``--no-plots`` to skip the figures)
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from shiftsim.cost import estimate, mapping
from shiftsim.datapath.hardware_desc import describe
from shiftsim.datapath.mac import FixedMacDatapath
from shiftsim.datapath.shift_add import ShiftAddDatapath
from shiftsim.energy import COMPONENTS, EnergyTable, ErtTable, energy_breakdown
from shiftsim.hardware import Hardware
from shiftsim.io.topology import read_topology
from shiftsim.quantize import quantize_shiftcnn

ARITH = ("add", "multiply", "shift", "negate", "select", "log_ops")
LANES = (*ARITH, "multicast", "weight_rf", "psum_rf")
FIGURES = Path(__file__).resolve().parent.parent / "notebooks" / "figures"


def counts(net: str, hardware: Hardware, seed: int = 0) -> list[dict]:
    """Per layer and datapath: the counts, the mapping and the MACs."""
    rng = np.random.default_rng(seed)
    shift, mac = ShiftAddDatapath(n_codebooks=2, bits=4), FixedMacDatapath()
    rows = []
    for tl in read_topology(net, padding="same"):
        shape = (1, tl.layer.in_channels, *tl.input_hw)
        code = quantize_shiftcnn(rng.normal(size=tl.layer.weight_shape), 2, 4)
        ho, wo = tl.layer.output_hw(*tl.input_hw)
        kh, kw = tl.layer.kernel_size
        macs = tl.layer.out_channels * ho * wo * tl.layer.channels_per_group * kh * kw
        for name, dp, c in (
            ("shift", shift, estimate(tl.layer, shift, hardware, code=code, input_shape=shape)),
            ("mac8", mac, estimate(tl.layer, mac, hardware, input_shape=shape)),
        ):
            m = mapping(tl.layer, dp, hardware, shape, counts=c)
            rows.append({"layer": tl.name, "datapath": name, "dp": dp, "counts": c,
                         "macs": macs, **m})  # fmt: skip
    return rows


def priced(rows: list[dict], hardware: Hardware, table: EnergyTable) -> pd.DataFrame:
    """Energy per component (pJ) of every row under ``table``."""
    out = []
    for r in rows:
        parts = energy_breakdown(r["counts"], r["dp"], hardware, table)
        out.append({"layer": r["layer"], "datapath": r["datapath"], "macs": r["macs"],
                    "cycles": r["counts"].cycles, "dataflow": r["dataflow"],
                    "dram_ratio": r["dram_ratio"], **parts})  # fmt: skip
    return pd.DataFrame(out)


def ratios(df: pd.DataFrame) -> dict[str, float]:
    """MAC / shift energy ratios (a), (b), (b'), (c), (d) over the whole network."""
    t = df.groupby("datapath")[list(COMPONENTS)].sum()
    groups = {
        "arithmetic": list(ARITH),
        "datapath": list(LANES),
        "datapath+shift_buffer": [*LANES, "shift_buffer"],
        "on_chip": [c for c in COMPONENTS if c != "dram"],
        "whole_chip": list(COMPONENTS),
    }
    return {k: t.loc["mac8", v].sum() / t.loc["shift", v].sum() for k, v in groups.items()}


def rf_shift_buffer(table: EnergyTable, hardware: Hardware) -> EnergyTable:
    """``table`` with the shift buffer priced as a 1 KiB register file read P-1 words wide."""
    p = describe(ShiftAddDatapath(n_codebooks=2, bits=4))
    width = p.words_per_input * p.word_bits
    per_bit = table.storage_pj_per_bit(1024, width)
    fields = {k: getattr(table, k) for k in EnergyTable.__dataclass_fields__}
    fields["name"] = f"{table.name}; shift buffer as a 1 KiB register file"
    return ErtTable(**fields, overrides=(("shift_buffer_pj_per_bit", per_bit),))


def report(net: str, preset: str, df: pd.DataFrame) -> None:
    t = df.groupby("datapath")[list(COMPONENTS)].sum()
    macs = df.groupby("datapath")["macs"].sum()
    per_mac = t.div(macs, axis=0)
    print(f"\n== {net} on Hardware.{preset}(), auto dataflow; pJ per MAC by component")
    print(per_mac.T.to_string(float_format=lambda v: f"{v:8.4f}"))
    onchip = per_mac.drop(columns="dram").sum(axis=1)
    print("on-chip pJ/MAC: " + ", ".join(f"{k} {v:.3f}" for k, v in onchip.items()))
    print("whole-chip pJ/MAC: " + ", ".join(f"{k} {v:.3f}" for k, v in per_mac.sum(axis=1).items()))
    flows = df.groupby("datapath")["dataflow"].agg(lambda s: dict(s.value_counts()))
    print("dataflow chosen per layer: " + "; ".join(f"{k} {v}" for k, v in flows.items()))
    dram = df.groupby("datapath")["dram_ratio"]
    print("DRAM / compulsory: " + "; ".join(
        f"{k} median {v.median():.2f}, max {v.max():.2f}, layers within 2x "
        f"{int((v <= 2).sum())}/{len(v)}" for k, v in dram))  # fmt: skip
    r = ratios(df)
    print("MAC / shift energy: " + ", ".join(f"({k}) {v:.2f}x" for k, v in r.items()))
    print("per layer (whole chip, MAC / shift):")
    lay = df.pivot_table(index="layer", columns="datapath", values=list(COMPONENTS), sort=False)
    whole = lay.T.groupby(level=1).sum().T
    print((whole["mac8"] / whole["shift"]).round(3).to_string())


def plots(rows_paper: list[dict], hw: Hardware, table: EnergyTable) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIGURES.mkdir(parents=True, exist_ok=True)
    df = priced(rows_paper, hw, table)
    t = df.groupby("datapath")[list(COMPONENTS)].sum()
    per_mac = t.div(df.groupby("datapath")["macs"].sum(), axis=0)
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(per_mac))
    colours = plt.get_cmap("tab20").colors
    for i, comp in enumerate(COMPONENTS):
        vals = per_mac[comp].to_numpy()
        if vals.max() <= 0:
            continue
        ax.bar(per_mac.index, vals, bottom=bottom, label=comp, color=colours[i])
        bottom += vals
    ax.set_ylabel("pJ per MAC")
    ax.set_title("ResNet-18 on Hardware.paper(), auto dataflow: energy per level")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(FIGURES / "energy_breakdown_resnet18.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4))
    per_byte = np.array([20, 50, 100, 160, 243.75, 320, 500])
    variants = (
        ("shift buffer: SRAM (512 KiB)", table),
        ("shift buffer: 1 KiB register file", rf_shift_buffer(table, hw)),
    )
    for label, tab in variants:
        ys = []
        for pb in per_byte:
            r = ratios(priced(rows_paper, hw, tab.replace(dram_pj=pb * tab.dram_access_bits / 8)))
            ys.append(r["whole_chip"])
        ax.plot(per_byte, ys, marker="o", label=label)
    ax.axhline(4.0, color="grey", ls="--", lw=1, label="paper's 4x")
    ax.axhline(1.0, color="black", lw=0.8)
    ax.set_xlabel("DRAM energy, pJ per byte (default 244: 1.95 nJ per 64-bit access)")
    ax.set_ylabel("MAC / shift whole-chip energy")
    ax.set_title("ResNet-18, Hardware.paper(): what decides the headline")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(FIGURES / "headline_sensitivity.png", dpi=120)
    plt.close(fig)
    print(f"\nfigures written to {FIGURES}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args()
    table = EnergyTable.default()
    print(f"energy table: {table.name}")
    rows_paper = None
    for net in ("resnet18", "alexnet"):
        for preset in ("paper", "edge", "tiny"):
            hw = getattr(Hardware, preset)()
            rows = counts(net, hw)
            if net == "resnet18" and preset == "paper":
                rows_paper = rows
            df = priced(rows, hw, table)
            report(net, preset, df)
            if preset == "paper":
                rf = ratios(priced(rows, hw, rf_shift_buffer(table, hw)))
                print("  with the shift buffer as a 1 KiB register file: " + ", ".join(
                    f"({k}) {v:.2f}x" for k, v in rf.items()))  # fmt: skip
    if not args.no_plots and rows_paper is not None:
        plots(rows_paper, Hardware.paper(), table)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, python "
          f"{platform.python_version()}")  # fmt: skip


if __name__ == "__main__":
    main()
