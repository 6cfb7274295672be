"""Datasets from local files only: scikit-learn digits, Fashion-MNIST (IDX), CIFAR-10.

Nothing is downloaded. A missing or corrupt dataset raises :class:`DatasetError` saying
where dwlab looked and how to get the files.

Images are kept in their stored form (uint8 for Fashion-MNIST and CIFAR-10) and turned
into normalised float batches on the fly. The training order and the augmentation of
epoch ``e`` come from generators seeded by ``(seed, e)``, so a resumed run replays exactly
the batches an uninterrupted one would have seen.
"""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dwlab.core.errors import DatasetError

FASHION_DEFAULT_DIR = Path("/usr/share/datasets/fashion-mnist")
"""Where Debian's ``dataset-fashion-mnist`` package installs the IDX files."""

FASHION_HOW_TO_GET = (
    "install them with 'apt install dataset-fashion-mnist' (files go to "
    f"{FASHION_DEFAULT_DIR}), or copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz from "
    "https://github.com/zalandoresearch/fashion-mnist into a folder and set training.data_dir"
)
CIFAR_HOW_TO_GET = (
    "download cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/cifar.html on a "
    "machine with network access, copy it (or the unpacked cifar-10-batches-py folder) here, "
    "and set training.data_dir to the folder that holds it"
)


@dataclass
class ImageData:
    """Train and test images (N, C, H, W) with integer labels, plus how to normalise them."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    scale: float
    """Stored value of full intensity (255 for uint8 images, 16 for digits)."""
    augment: bool
    """Random crop (padding 4) and horizontal flip during training (CIFAR-10)."""
    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.mean is None or self.std is None:
            # Per-channel statistics of the training images, in [0, 1] units.
            x = self.train_x.float() / self.scale
            self.mean = x.mean(dim=(0, 2, 3))
            self.std = x.std(dim=(0, 2, 3)).clamp(min=1e-6)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.train_x.shape[2])

    @property
    def train_size(self) -> int:
        return int(self.train_x.shape[0])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        assert self.mean is not None and self.std is not None  # set by __post_init__
        x = x.float() / self.scale
        mean = self.mean.to(x.device).view(1, -1, 1, 1)
        std = self.std.to(x.device).view(1, -1, 1, 1)
        return (x - mean) / std


# ---------------------------------------------------------------------------
# batching


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator for epoch ``epoch``'s order and augmentation (CPU, reproducible)."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))


def batches_per_epoch(data: ImageData, batch_size: int) -> int:
    """Full batches per epoch (the incomplete last batch is dropped; batch norm needs >1)."""
    return max(1, data.train_size // batch_size)


def augment_batch(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding by ``pad``, and random horizontal flip, per image."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None, :]).to(x.device)
    cols = (dx[:, None] + torch.arange(w)[None, :]).to(x.device)
    cols = torch.where(flip.to(x.device)[:, None], cols.flip(1), cols)
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]


def train_batches(
    data: ImageData, batch_size: int, seed: int, epoch: int, start_batch: int = 0,
    device: str | torch.device = "cpu",
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """Yield ``(batch_index, x, y)`` of one training epoch, from ``start_batch`` on.

    The order and augmentation depend only on ``(seed, epoch)``; skipped batches still
    draw their augmentation so that later batches match an uninterrupted epoch.
    """
    gen = epoch_generator(seed, epoch)
    order = torch.randperm(data.train_size, generator=gen)
    for b in range(batches_per_epoch(data, batch_size)):
        idx = order[b * batch_size:(b + 1) * batch_size]
        x = data.train_x[idx]
        if data.augment:
            x = augment_batch(x, gen)
        if b < start_batch:
            continue
        yield b, data.normalise(x.to(device)), data.train_y[idx].to(device)


def eval_batches(
    data: ImageData, batch_size: int, device: str | torch.device = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Test images in order, normalised, without augmentation."""
    for i in range(0, int(data.test_x.shape[0]), batch_size):
        yield (data.normalise(data.test_x[i:i + batch_size].to(device)),
               data.test_y[i:i + batch_size].to(device))


# ---------------------------------------------------------------------------
# loaders


def load_digits(limit_train: int | None = None, limit_test: int | None = None) -> ImageData:
    """scikit-learn's bundled 8x8 digits; a fixed 80/20 split (independent of run seeds)."""
    from sklearn.datasets import load_digits as sk_digits

    bunch = sk_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(12345))
    x, y = x[order], y[order]
    n_train = int(0.8 * len(y))
    return _limited(ImageData("digits", x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                              num_classes=10, scale=16.0, augment=False),
                    limit_train, limit_test)


def _read_maybe_gzip(path: Path) -> bytes:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DatasetError(f"{path}: corrupt gzip file ({exc})") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (the MNIST format): magic 0x00 0x00 dtype ndim, big-endian sizes, data."""
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DatasetError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(
            f"{path}: IDX header promises {expected} bytes of data for shape {dims}, "
            f"file holds {len(raw) - header}; the file is truncated or corrupt"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def load_fashion_mnist(
    data_dir: str | Path | None = None, limit_train: int | None = None,
    limit_test: int | None = None,
) -> ImageData:
    """Fashion-MNIST from its four IDX files (``.gz`` or plain) in ``data_dir``."""
    folder = Path(data_dir) if data_dir is not None else FASHION_DEFAULT_DIR
    stems = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
    found = {key: _find_idx(folder, stem) for key, stem in stems.items()}
    paths = {key: path for key, path in found.items() if path is not None}
    missing = [stem for key, stem in stems.items() if key not in paths]
    if missing:
        raise DatasetError(
            f"Fashion-MNIST not found: looked in {folder} for {', '.join(missing)} "
            f"(.gz or plain); {FASHION_HOW_TO_GET}"
        )
    arrays = {key: read_idx(p) for key, p in paths.items()}
    for split in ("train", "test"):
        xs, ys = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if xs.ndim != 3 or ys.ndim != 1 or len(xs) != len(ys):
            raise DatasetError(
                f"Fashion-MNIST in {folder}: {split} images {xs.shape} and labels {ys.shape} "
                "do not match"
            )
        if ys.size and ys.max() > 9:
            raise DatasetError(f"Fashion-MNIST in {folder}: {split} label {ys.max()} > 9")
    data = ImageData(
        "fashion_mnist",
        torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1),
        torch.from_numpy(arrays["train_y"].astype(np.int64)),
        torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1),
        torch.from_numpy(arrays["test_y"].astype(np.int64)),
        num_classes=10, scale=255.0, augment=False,
    )
    return _limited(data, limit_train, limit_test)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickles the CIFAR-10 batch dicts (numpy arrays, lists, bytes) and nothing else.

    The CIFAR files are Python pickles; this refuses every other global so that a hostile
    file cannot run code.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module == "numpy.core.multiarray":  # old name of numpy._core.multiarray
            module = "numpy._core.multiarray" if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _cifar_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means a corrupt file
        raise DatasetError(f"{where}: not a readable CIFAR-10 batch ({exc})") from None
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DatasetError(f"{where}: CIFAR-10 batch lacks 'data' or 'labels'")
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    labels = np.asarray(batch[b"labels"], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise DatasetError(
            f"{where}: expected data of shape (N, 3072) and N labels, got {data.shape} "
            f"and {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise DatasetError(f"{where}: labels outside 0..9")
    return data.reshape(-1, 3, 32, 32), labels


CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def _cifar_raw_batches(folder: Path) -> tuple[dict[str, bytes], str]:
    """The six batch files' bytes, from an unpacked folder or the .tar.gz."""
    for candidate in (folder / "cifar-10-batches-py", folder):
        if all((candidate / b).is_file() for b in CIFAR_BATCHES):
            return {b: (candidate / b).read_bytes() for b in CIFAR_BATCHES}, str(candidate)
    archive = folder / "cifar-10-python.tar.gz"
    if archive.is_file():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                found = {}
                for member in tar.getmembers():
                    base = Path(member.name).name
                    file = tar.extractfile(member) if member.isfile() else None
                    if file is not None and base in CIFAR_BATCHES:
                        found[base] = file.read()
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise DatasetError(f"{archive}: corrupt archive ({exc}); {CIFAR_HOW_TO_GET}") from None
        missing = [b for b in CIFAR_BATCHES if b not in found]
        if missing:
            raise DatasetError(f"{archive}: archive lacks {', '.join(missing)}")
        return found, str(archive)
    raise DatasetError(
        f"CIFAR-10 not found: looked for {folder}/cifar-10-batches-py/, CIFAR batch files in "
        f"{folder}, and {archive}; {CIFAR_HOW_TO_GET}"
    )


def load_cifar10(
    data_dir: str | Path | None, limit_train: int | None = None, limit_test: int | None = None
) -> ImageData:
    """CIFAR-10 (python version) from ``data_dir``; trained with crop and flip augmentation."""
    if data_dir is None:
        raise DatasetError(f"CIFAR-10 needs training.data_dir; {CIFAR_HOW_TO_GET}")
    raw, where = _cifar_raw_batches(Path(data_dir))
    parts = {name: _cifar_batch(blob, f"{where}: {name}") for name, blob in raw.items()}
    train_x = np.concatenate([parts[b][0] for b in CIFAR_BATCHES[:5]])
    train_y = np.concatenate([parts[b][1] for b in CIFAR_BATCHES[:5]])
    test_x, test_y = parts["test_batch"]
    data = ImageData(
        "cifar10", torch.from_numpy(train_x), torch.from_numpy(train_y),
        torch.from_numpy(test_x.copy()), torch.from_numpy(test_y),
        num_classes=10, scale=255.0, augment=True,
    )
    return _limited(data, limit_train, limit_test)


def _limited(data: ImageData, limit_train: int | None, limit_test: int | None) -> ImageData:
    """The first ``limit_*`` images of each split (quick runs and tests)."""
    if limit_train is None and limit_test is None:
        return data
    return ImageData(
        data.name, data.train_x[:limit_train], data.train_y[:limit_train],
        data.test_x[:limit_test], data.test_y[:limit_test],
        num_classes=data.num_classes, scale=data.scale, augment=data.augment,
    )


DATASETS = {"digits", "fashion_mnist", "cifar10"}


def load_dataset(
    name: str, data_dir: str | Path | None = None, limit_train: int | None = None,
    limit_test: int | None = None, augment: bool | None = None,
) -> ImageData:
    """Load a dataset by name; ``augment`` overrides the dataset's default."""
    if name == "digits":
        data = load_digits(limit_train, limit_test)
    elif name == "fashion_mnist":
        data = load_fashion_mnist(data_dir, limit_train, limit_test)
    elif name == "cifar10":
        data = load_cifar10(data_dir, limit_train, limit_test)
    else:
        raise DatasetError(f"unknown dataset '{name}'; choose one of {sorted(DATASETS)}")
    if augment is not None:
        data.augment = augment
    return data
