"""RTL in the loop: golden test vectors, reference Verilog and synthesis counts.

- :func:`write_vectors` writes ``$readmemh`` hex files plus a JSON manifest for one layer (or a
  tile) on a datapath, checked against the functional model;
- the ``*.v`` files next to this module are the reference RTL (one ShiftCNN accumulation lane,
  the fixed-point MAC lane and the log-domain lane) that passes those vectors;
- :mod:`shiftsim.rtl.synth` synthesises the lanes with Yosys and turns the cell counts into an
  energy table.
"""

from shiftsim.rtl.vectors import MANIFEST, Vectors, make_vectors, read_vectors, write_vectors

__all__ = ["MANIFEST", "Vectors", "make_vectors", "read_vectors", "rtl_dir", "write_vectors"]


def rtl_dir() -> str:
    """The directory holding the reference Verilog sources (package data)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parent)
