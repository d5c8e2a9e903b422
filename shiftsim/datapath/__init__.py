"""Datapaths: configuration plus ``run()``, each validating before its kernels run."""

from shiftsim.datapath.base import LEVELS, Datapath, LayerResult, Prepared

__all__ = ["LEVELS", "Datapath", "LayerResult", "Prepared"]
