import gzip
import io
import os
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from dwlab.app.data import (
    FASHION_DEFAULT_DIR,
    augment_batch,
    batches_per_epoch,
    load_cifar10,
    load_dataset,
    load_fashion_mnist,
    train_batches,
)
from dwlab.core.errors import DatasetError


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_fashion(folder, n_train=20, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        raw = idx_bytes(arr)
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / stem).write_bytes(raw)
    return arrays


def cifar_batch_bytes(n, seed):
    rng = np.random.default_rng(seed)
    batch = {b"batch_label": b"tiny", b"labels": rng.integers(0, 10, n).tolist(),
             b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8),
             b"filenames": [b"x.png"] * n}
    return pickle.dumps(batch, protocol=2), batch


def write_cifar(folder, n=6, as_tar=False):
    """Tiny CIFAR-10 python-version files: data_batch_1..5 and test_batch."""
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    blobs = {name: cifar_batch_bytes(n, seed) for seed, name in enumerate(names)}
    if as_tar:
        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(folder / "cifar-10-python.tar.gz", "w:gz") as tar:
            for name, (raw, _) in blobs.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        inner = folder / "cifar-10-batches-py"
        inner.mkdir(parents=True, exist_ok=True)
        for name, (raw, _) in blobs.items():
            (inner / name).write_bytes(raw)
    return {name: batch for name, (_, batch) in blobs.items()}


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_reads_idx_files(tmp_path, gz):
    arrays = write_fashion(tmp_path, gz=gz)
    data = load_fashion_mnist(tmp_path)
    assert data.train_x.shape == (20, 1, 28, 28) and data.train_x.dtype == torch.uint8
    assert data.test_x.shape == (10, 1, 28, 28)
    assert np.array_equal(data.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(data.test_y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert data.in_channels == 1 and data.image_size == 28 and not data.augment


def test_fashion_mnist_missing_says_where_and_how(tmp_path):
    with pytest.raises(DatasetError) as err:
        load_fashion_mnist(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "apt install dataset-fashion-mnist" in msg
    assert "train-images-idx3-ubyte" in msg


def test_fashion_mnist_truncated_file_is_reported(tmp_path):
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="train-images-idx3-ubyte.*truncated or corrupt"):
        load_fashion_mnist(tmp_path)
    path.write_bytes(b"garbage!")
    with pytest.raises(DatasetError, match="bad magic"):
        load_fashion_mnist(tmp_path)


@pytest.mark.skipif(not FASHION_DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion_mnist", limit_train=1000, limit_test=500)
    assert data.train_x.shape == (1000, 1, 28, 28) and data.test_x.shape == (500, 1, 28, 28)
    # All ten classes occur and the pixel statistics are those of Fashion-MNIST.
    assert data.train_y.unique().numel() == 10
    assert 0.25 < float(data.mean[0]) < 0.32


@pytest.mark.parametrize("as_tar", [False, True])
def test_cifar10_reads_the_python_batches(tmp_path, as_tar):
    batches = write_cifar(tmp_path, n=6, as_tar=as_tar)
    data = load_cifar10(tmp_path)
    assert data.train_x.shape == (30, 3, 32, 32) and data.test_x.shape == (6, 3, 32, 32)
    assert data.augment
    # Row layout: 1024 red, 1024 green, 1024 blue values, each 32x32 row-major.
    first = batches["data_batch_1"][b"data"][0]
    assert data.train_x[0, 1, 2, 3].item() == first[1024 + 2 * 32 + 3]
    assert data.train_y[6:12].tolist() == batches["data_batch_2"][b"labels"]
    assert data.test_y.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_missing_and_hostile_files(tmp_path):
    with pytest.raises(DatasetError, match="CIFAR-10 not found.*cifar-10-python.tar.gz"):
        load_cifar10(tmp_path)
    with pytest.raises(DatasetError, match="training.data_dir"):
        load_cifar10(None)
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DatasetError, match="test_batch.*refusing to load"):
        load_cifar10(tmp_path)


def test_cifar10_corrupt_archive(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DatasetError, match="corrupt archive"):
        load_cifar10(tmp_path)


def test_digits_split_and_normalisation():
    data = load_dataset("digits")
    assert data.train_x.shape == (1437, 1, 8, 8) and data.test_x.shape == (360, 1, 8, 8)
    x = data.normalise(data.train_x)
    assert abs(x.mean().item()) < 1e-4 and abs(x.std().item() - 1) < 1e-2


def test_augmentation_is_a_shifted_window_or_its_mirror():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).reshape(2, 3, 6, 6)
    gen = torch.Generator().manual_seed(3)
    out = augment_batch(x, gen, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = [padded[i, :, dy:dy + 6, dx:dx + 6] for dy in range(5) for dx in range(5)]
        candidates = windows + [w.flip(-1) for w in windows]
        assert any(torch.equal(out[i], w) for w in candidates)
    # Over many images both flips and several offsets occur.
    many = augment_batch(torch.rand(64, 1, 8, 8), torch.Generator().manual_seed(0))
    assert many.shape == (64, 1, 8, 8)


def test_epoch_order_depends_only_on_seed_and_epoch_and_resumes_exactly(tmp_path):
    write_cifar(tmp_path, n=20)
    data = load_cifar10(tmp_path)  # augmented: the resume must replay augmentation too
    full = list(train_batches(data, 16, seed=5, epoch=2))
    assert len(full) == batches_per_epoch(data, 16) == 6
    tail = list(train_batches(data, 16, seed=5, epoch=2, start_batch=4))
    assert [b for b, _, _ in tail] == [4, 5]
    for (_, xa, ya), (_, xb, yb) in zip(full[4:], tail, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    other = next(train_batches(data, 16, seed=5, epoch=3))
    assert not torch.equal(full[0][2], other[2])
