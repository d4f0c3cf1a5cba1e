"""MedMNIST data for the medical-image CNN recipe.

The MedMNIST v2 collection (Yang et al., *MedMNIST v2 - A large-scale lightweight benchmark for 2D and 3D
biomedical image classification*, Scientific Data 2023) ships each dataset as one `.npz` file with the keys
`{train,val,test}_{images,labels}`: `uint8` images of shape `(N, H, W)` (grayscale) or `(N, H, W, 3)`
(RGB) and integer labels of shape `(N, L)` (`L = 1` except for the multi-label ChestMNIST). The file for
size 28 is `<flag>.npz`; the larger sizes are `<flag>_<size>.npz`. The dataset facts (task type, classes,
split sizes, download URL and MD5) come from `medmnist.INFO`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from reglight._validation import check_choice, check_nonnegative, check_positive_int
from reglight.errors import DataFileError
from reglight.transforms import ScheduledTransform

from .augment import medical_augmentation

__all__ = [
    "MEDMNIST_2D_FLAGS",
    "MEDMNIST_SIZES",
    "MedMNISTDataModule",
    "MedMNISTFileError",
    "MedMNISTSplit",
    "TaskSpec",
    "channel_stats",
    "default_root",
    "download_medmnist",
    "load_medmnist_npz",
    "npz_filename",
    "task_spec",
    "write_synthetic_medmnist",
]

MEDMNIST_SIZES: tuple[int, ...] = (28, 64, 128, 224)
"""Image sizes MedMNIST v2 publishes for its 2D datasets."""

TASKS: tuple[str, ...] = (
    "binary-class",
    "multi-class",
    "multi-label, binary-class",
    "ordinal-regression",
)
"""Task types that appear in `medmnist.INFO`."""

SPLITS: tuple[str, ...] = ("train", "val", "test")


def _info() -> Mapping[str, Mapping[str, Any]]:
    from medmnist.info import INFO

    return INFO


def _flags_2d() -> tuple[str, ...]:
    return tuple(k for k, v in _info().items() if not str(v["python_class"]).endswith("3D"))


MEDMNIST_2D_FLAGS: tuple[str, ...] = _flags_2d()
"""The 2D dataset flags of `medmnist.INFO` (`"breastmnist"`, `"pneumoniamnist"`, ...)."""


class MedMNISTFileError(DataFileError):
    """A MedMNIST `.npz` file is missing, cannot be downloaded, or is not in MedMNIST's format."""


@dataclass(frozen=True)
class TaskSpec:
    """What `medmnist.INFO` says about one dataset, in the form the recipe needs.

    Attributes:
        flag: The dataset flag, e.g. `"breastmnist"`.
        task: One of `"binary-class"`, `"multi-class"`, `"multi-label, binary-class"`,
            `"ordinal-regression"`.
        num_classes: Number of classes (for multi-label: number of labels); the number of model outputs.
        n_channels: 1 (grayscale) or 3 (RGB).
        label_names: Human-readable class (or label) names, in index order.
        n_samples: Official split sizes, `{"train": ..., "val": ..., "test": ...}`.
    """

    flag: str
    task: str
    num_classes: int
    n_channels: int
    label_names: tuple[str, ...]
    n_samples: Mapping[str, int]

    @property
    def multilabel(self) -> bool:
        """`True` for multi-label tasks (sigmoid outputs, binary cross-entropy)."""
        return self.task == "multi-label, binary-class"


def task_spec(flag: str) -> TaskSpec:
    """Return the [TaskSpec][reglight.recipes.medical_cnn.TaskSpec] of a 2D MedMNIST dataset (`medmnist.INFO`).

    Args:
        flag: A 2D dataset flag (see `MEDMNIST_2D_FLAGS`).

    Returns:
        The task type, number of classes, channels, label names and split sizes.

    Raises:
        ValueError: If `flag` is not a 2D MedMNIST dataset.

    Examples:
        >>> spec = task_spec("breastmnist")
        >>> spec.task, spec.num_classes, spec.n_channels, spec.n_samples["train"]
        ('binary-class', 2, 1, 546)
    """
    check_choice("flag", flag, MEDMNIST_2D_FLAGS)
    info = _info()[flag]
    labels = info["label"]
    names = tuple(str(labels[k]) for k in sorted(labels, key=int))
    task = str(info["task"])
    if task not in TASKS:  # pragma: no cover - guards against a future medmnist release
        raise ValueError(f"medmnist.INFO[{flag!r}] has an unknown task type {task!r}")
    return TaskSpec(
        flag=flag,
        task=task,
        num_classes=len(names),
        n_channels=int(info["n_channels"]),
        label_names=names,
        n_samples={s: int(info["n_samples"][s]) for s in SPLITS},
    )


def npz_filename(flag: str, size: int = 28) -> str:
    """File name MedMNIST uses for `flag` at `size`: `<flag>.npz` (28) or `<flag>_<size>.npz`.

    Args:
        flag: Dataset flag.
        size: Image size, one of 28, 64, 128, 224.

    Returns:
        The file name (no folder).

    Examples:
        >>> npz_filename("breastmnist"), npz_filename("breastmnist", 64)
        ('breastmnist.npz', 'breastmnist_64.npz')
    """
    if size not in MEDMNIST_SIZES:
        raise ValueError(f"`size` must be one of {MEDMNIST_SIZES}, got {size!r}")
    return f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz"


def default_root() -> Path:
    """The folder MedMNIST files are read from when no `root` is given.

    The environment variable `REGLIGHT_DATA` if it is set, else medmnist's own default `~/.medmnist`.

    Returns:
        The folder (it may not exist yet).

    Examples:
        >>> isinstance(default_root(), Path)
        True
    """
    env = os.environ.get("REGLIGHT_DATA")
    if env:
        return Path(env).expanduser()
    return Path("~/.medmnist").expanduser()


def _download_hint(flag: str, size: int, path: Path) -> str:
    info = _info()[flag]
    suffix = "" if size == 28 else f"_{size}"
    return (
        f"Download it from {info[f'url{suffix}']} (MD5 {info[f'MD5{suffix}']}) and put it at {path}, "
        f"or point `root` (or the REGLIGHT_DATA environment variable) at the folder that holds "
        f"{path.name}, or pass download=True on a machine with internet access."
    )


def _file_md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _damaged_message(path: Path, flag: str, size: int, err: BaseException) -> str:
    """The file cannot be read as a `.npz`: say so, with its MD5 against MedMNIST's, and the fix."""
    suffix = "" if size == 28 else f"_{size}"
    expected = _info().get(flag, {}).get(f"MD5{suffix}")
    md5 = _file_md5(path)
    if expected is None:
        check = f"its MD5 is {md5}"
    elif md5 == expected:
        check = f"its MD5 {md5} is MedMNIST's, so the file was damaged after its check"
    else:
        check = f"its MD5 is {md5}, MedMNIST's {path.name} has {expected}"
    url = _info().get(flag, {}).get(f"url{suffix}", "MedMNIST's Zenodo record")
    return (
        f"{path} is damaged (reading it failed with {type(err).__name__}; an interrupted download "
        f"or a copy cut short): {check} ({path.stat().st_size} bytes). Delete it and run again "
        f"with download=True (`--data.download true`), or put a good copy from {url} in its place."
    )


def _unreadable_zip(path: Path) -> bool:
    """Whether `path` lacks a readable zip directory (garbage, or cut short before its end)."""
    import zipfile

    try:
        with zipfile.ZipFile(path):
            return False
    except (zipfile.BadZipFile, OSError, EOFError):
        return True


def download_medmnist(flag: str, size: int, root: str | os.PathLike[str]) -> Path:
    """Download `<flag>[_<size>].npz` into `root` and check its MD5 against `medmnist.INFO`.

    An existing file with the right MD5 is not downloaded again.

    Args:
        flag: A 2D dataset flag.
        size: Image size, one of 28, 64, 128, 224.
        root: Destination folder (created if needed).

    Returns:
        The path of the verified file.

    Raises:
        MedMNISTFileError: If the download or the MD5 check fails; the message says where to put the file.
    """
    from torchvision.datasets.utils import check_integrity, download_url

    check_choice("flag", flag, MEDMNIST_2D_FLAGS)
    name = npz_filename(flag, size)
    folder = Path(root).expanduser()
    path = folder / name
    suffix = "" if size == 28 else f"_{size}"
    info = _info()[flag]
    md5 = str(info[f"MD5{suffix}"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
        download_url(str(info[f"url{suffix}"]), root=str(folder), filename=name, md5=md5)
    except (
        Exception
    ) as err:  # network errors come in many types (URLError, OSError, HTTPError, ...)
        raise MedMNISTFileError(
            f"Could not download {name}: {type(err).__name__}: {err}. "
            + _download_hint(flag, size, path)
        ) from err
    if not check_integrity(str(path), md5):
        raise MedMNISTFileError(f"{path} failed its MD5 check. " + _download_hint(flag, size, path))
    return path


def load_medmnist_npz(
    path: str | os.PathLike[str], spec: TaskSpec, size: int = 28
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and check a MedMNIST `.npz` file.

    Args:
        path: The `.npz` file.
        spec: The dataset's [TaskSpec][reglight.recipes.medical_cnn.TaskSpec] (for the channel count and
            label range).
        size: Expected image height and width.

    Returns:
        `{"train": (images, labels), "val": ..., "test": ...}` with images `uint8` of shape
        `(N, size, size)` or `(N, size, size, 3)` and labels of shape `(N, L)`.

    Raises:
        MedMNISTFileError: If the file is missing or unreadable, lacks a key, or has arrays of the wrong
            shape, dtype or label range. The message names the file and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise MedMNISTFileError(
            f"MedMNIST file not found: {path}. " + _download_hint(spec.flag, size, path)
        )
    try:
        return _read_npz(path, spec, size)
    except MedMNISTFileError:
        raise
    except Exception as err:  # zip, CRC, pickle and truncation errors of a damaged file
        raise MedMNISTFileError(_damaged_message(path, spec.flag, size, err)) from err


def _read_npz(path: Path, spec: TaskSpec, size: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    npz = np.load(path, allow_pickle=False)
    with npz:
        expected = [f"{s}_{k}" for s in SPLITS for k in ("images", "labels")]
        missing = [k for k in expected if k not in npz.files]
        if missing:
            raise MedMNISTFileError(
                f"{path} is not a MedMNIST file: missing key(s) {missing}; it has {sorted(npz.files)}"
            )
        img_shape = (size, size) if spec.n_channels == 1 else (size, size, spec.n_channels)
        n_labels = spec.num_classes if spec.multilabel else 1
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for split in SPLITS:
            images = npz[f"{split}_images"]
            labels = npz[f"{split}_labels"]
            if images.dtype != np.uint8 or images.ndim < 1 or tuple(images.shape[1:]) != img_shape:
                raise MedMNISTFileError(
                    f"{path}: `{split}_images` must be uint8 of shape (N, {', '.join(map(str, img_shape))})"
                    f" for {spec.flag} at size {size}, got {images.dtype} {tuple(images.shape)}"
                )
            if labels.ndim == 1:
                labels = labels[:, None]
            if (
                not np.issubdtype(labels.dtype, np.integer)
                or labels.ndim != 2
                or labels.shape != (images.shape[0], n_labels)
            ):
                raise MedMNISTFileError(
                    f"{path}: `{split}_labels` must be integers of shape ({images.shape[0]}, {n_labels}), "
                    f"got {labels.dtype} {tuple(labels.shape)}"
                )
            hi = 1 if spec.multilabel else spec.num_classes - 1
            if labels.size and (labels.min() < 0 or labels.max() > hi):
                raise MedMNISTFileError(
                    f"{path}: `{split}_labels` must lie in [0, {hi}] for {spec.flag} ({spec.task}), "
                    f"got values in [{labels.min()}, {labels.max()}]"
                )
            out[split] = (np.ascontiguousarray(images), np.ascontiguousarray(labels))
        return out


def write_synthetic_medmnist(
    path: str | os.PathLike[str],
    flag: str = "breastmnist",
    n_samples: tuple[int, int, int] = (64, 16, 16),
    size: int = 28,
    seed: int = 0,
) -> Path:
    """Write a small learnable dataset in MedMNIST's `.npz` format (for tests, demos and offline checks).

    The file has MedMNIST's keys, dtypes and shapes for `flag` (`uint8` images `(N, size, size)` or
    `(N, size, size, 3)`, integer labels `(N, 1)` or `(N, L)`). Images are noise plus a bright blob
    whose position encodes the class (one blob per positive label for multi-label tasks), so a small CNN
    learns the task in a few epochs.

    Args:
        path: Output file (its folder is created).
        flag: Which dataset's format to imitate (task type, classes, channels).
        n_samples: Number of train, validation and test images.
        size: Image size.
        seed: Random seed.

    Returns:
        The written path.

    Examples:
        >>> import tempfile
        >>> p = write_synthetic_medmnist(Path(tempfile.mkdtemp()) / "breastmnist.npz", n_samples=(8, 4, 4))
        >>> with np.load(p) as npz:
        ...     npz["train_images"].shape, npz["train_labels"].shape
        ((8, 28, 28), (8, 1))
    """
    spec = task_spec(flag)
    if len(n_samples) != 3 or any(not isinstance(n, int) or n < 1 for n in n_samples):
        raise ValueError(
            f"`n_samples` must be three positive integers (train, val, test), got {n_samples!r}"
        )
    rng = np.random.default_rng(seed)
    k = spec.num_classes
    yy, xx = np.mgrid[0:size, 0:size] / size
    angles = 2 * np.pi * np.arange(k) / k
    centres = np.stack([0.5 + 0.3 * np.cos(angles), 0.5 + 0.3 * np.sin(angles)], axis=1)
    blobs = np.exp(
        -((xx[None] - centres[:, :1, None]) ** 2 + (yy[None] - centres[:, 1:, None]) ** 2) / 0.01
    )
    arrays: dict[str, Any] = {}
    for split, n in zip(SPLITS, n_samples):
        if spec.multilabel:
            labels = (rng.random((n, k)) < 0.3).astype(np.uint8)
        else:
            labels = rng.integers(0, k, size=(n, 1)).astype(np.uint8)
        onehot = labels if spec.multilabel else np.eye(k, dtype=np.uint8)[labels[:, 0]]
        img = (
            0.25
            + 0.1 * rng.standard_normal((n, size, size))
            + 0.6 * np.einsum("nk,khw->nhw", onehot, blobs)
        )
        img = np.clip(img * 255, 0, 255).astype(np.uint8)
        if spec.n_channels == 3:
            img = np.repeat(img[..., None], 3, axis=-1)
        arrays[f"{split}_images"] = img
        arrays[f"{split}_labels"] = labels
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        np.savez_compressed(fh, **arrays)
    return out


class MedMNISTSplit(Dataset[tuple[Tensor, Tensor]]):
    """One split of a MedMNIST dataset held in memory.

    Images are kept as `uint8` NCHW tensors; each item is passed through `transform` (augmentation, on
    the `uint8` image), scaled to `[0, 1]` and normalized with `mean`/`std`.

    Args:
        images: `uint8` array `(N, H, W)` or `(N, H, W, C)`.
        labels: Integer array `(N, L)`.
        mean: Per-channel mean used for normalization.
        std: Per-channel standard deviation used for normalization.
        multilabel: Return float label vectors (multi-label) instead of class indices.
        transform: Optional callable applied to the `uint8` `(C, H, W)` image before normalization.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        multilabel: bool = False,
        transform: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        x = torch.from_numpy(images)
        self.images = (x.unsqueeze(1) if x.ndim == 3 else x.permute(0, 3, 1, 2)).contiguous()
        y = torch.from_numpy(labels.astype(np.int64))
        self.targets = y.float() if multilabel else y[:, 0]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        x = self.images[index]
        if self.transform is not None:
            x = self.transform(x)
        return (x.float().div_(255.0) - self.mean) / self.std, self.targets[index]


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of `uint8` images scaled to `[0, 1]`.

    Args:
        images: `(N, H, W)` or `(N, H, W, C)` `uint8` array (the training split).

    Returns:
        `(mean, std)`, one value per channel.

    Examples:
        >>> m, s = channel_stats(np.array([[[0, 255]]], dtype=np.uint8))
        >>> round(m[0], 3), round(s[0], 3)
        (0.5, 0.5)
    """
    x = images.astype(np.float64) / 255.0
    axes = (0, 1, 2)
    if x.ndim == 3:
        x = x[..., None]
    mean = x.mean(axis=axes)
    std = np.maximum(x.std(axis=axes), 1e-6)
    return tuple(float(v) for v in mean), tuple(float(v) for v in std)


class MedMNISTDataModule(pl.LightningDataModule):
    """A LightningDataModule for any 2D MedMNIST v2 dataset, with scheduled augmentation.

    Files are read from `root` (`<flag>.npz` for size 28, `<flag>_<size>.npz` otherwise). When the file
    is missing and `download=True`, it is downloaded from Zenodo with its MD5 checked (`prepare_data`,
    once per node); when it stays missing, a `MedMNISTFileError` says which file to put where.

    Normalization uses the per-channel mean and standard deviation of the **training split only**, so nothing
    about the validation or test images leaks into training. The task type of `medmnist.INFO`
    (`spec`) tells the model which loss and metrics to use.

    `test_dataloader` returns three loaders, named by `test_splits`: the test split, the training
    split without augmentation, and the validation split, so that a model can report the generalization gap
    measured the same way on all three.

    Args:
        flag: 2D MedMNIST dataset, e.g. `"breastmnist"`, `"pneumoniamnist"`, `"pathmnist"`.
        size: Image size: 28, 64, 128 or 224.
        root: Folder of the `.npz` files; `None` uses `$REGLIGHT_DATA` if set, else `~/.medmnist`.
        download: Download a missing file (needs internet; the MD5 is checked).
        batch_size: Training batch size (per process).
        eval_batch_size: Batch size of the validation and test loaders.
        num_workers: DataLoader worker processes.
        augment: Whether to augment the training images at all.
        rotation: Maximum rotation in degrees at full augmentation strength.
        translate: Maximum shift as a fraction of the image size at full strength.
        scale: Maximum relative zoom in or out at full strength (0.1 means scale in [0.9, 1.1]).
        hflip: Random horizontal flips.
        vflip: Random vertical flips.
        rand_augment_ops: Number of RandAugment operations per image (0 disables RandAugment).
        rand_augment_magnitude: RandAugment magnitude (0-30) at full strength.
        erasing: Random-erasing probability at full strength (0 disables it).
        magnitude: Initial augmentation strength in `[0, 1]`; an `AugmentationScheduler` (group
            `"default"`) changes it during training, in DataLoader workers too.
        train_size: Train on a class-stratified subset of this many training images (`None`: all); the
            subset is fixed by `subset_seed` and nested across sizes (see
            [stratified_subset][reglight.subsets.stratified_subset]). The normalization statistics and the
            `train` test loader use the subset; validation and test splits are whole.
        subset_seed: Seed of the training subset (`train_size` only).

    Examples:
        >>> dm = MedMNISTDataModule("breastmnist", root="/nonexistent", download=False)
        >>> dm.spec.task, dm.spec.num_classes
        ('binary-class', 2)
    """

    def __init__(
        self,
        flag: str = "breastmnist",
        size: int = 28,
        root: str | None = None,
        download: bool = True,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        augment: bool = True,
        rotation: float = 15.0,
        translate: float = 0.1,
        scale: float = 0.1,
        hflip: bool = True,
        vflip: bool = False,
        rand_augment_ops: int = 0,
        rand_augment_magnitude: int = 9,
        erasing: float = 0.0,
        magnitude: float = 1.0,
        train_size: int | None = None,
        subset_seed: int = 0,
    ) -> None:
        super().__init__()
        if train_size is not None:
            check_positive_int("train_size", train_size)
        check_positive_int("subset_seed", subset_seed, minimum=0)
        self.train_size = train_size
        self.subset_seed = subset_seed
        self.spec = task_spec(flag)
        if size not in MEDMNIST_SIZES:
            raise ValueError(f"`size` must be one of {MEDMNIST_SIZES}, got {size!r}")
        if root is not None and not isinstance(root, (str, os.PathLike)):
            raise TypeError(f"`root` must be a path or None, got {type(root).__name__}")
        self.flag = flag
        self.size = size
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.download = bool(download)
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.eval_batch_size = check_positive_int("eval_batch_size", eval_batch_size)
        self.num_workers = int(check_nonnegative("num_workers", num_workers))
        self.augmentation: ScheduledTransform | None = (
            medical_augmentation(
                rotation=rotation,
                translate=translate,
                scale=scale,
                hflip=hflip,
                vflip=vflip,
                rand_augment_ops=rand_augment_ops,
                rand_augment_magnitude=rand_augment_magnitude,
                erasing=erasing,
                magnitude=magnitude,
            )
            if augment
            else None
        )
        self.save_hyperparameters()
        self.mean: tuple[float, ...] | None = None
        self.std: tuple[float, ...] | None = None
        self.splits: dict[str, MedMNISTSplit] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] | None = None

    test_splits: tuple[str, ...] = ("test", "train", "val")
    """Names of the loaders returned by `test_dataloader`, in order."""

    @property
    def path(self) -> Path:
        """The `.npz` file this datamodule reads."""
        return self.root / npz_filename(self.flag, self.size)

    def prepare_data(self) -> None:
        """With `download=True`, download the file when it is missing or damaged (once per node).

        A file without a readable zip directory (garbage, or a download cut short) whose MD5 is
        not MedMNIST's is deleted and downloaded again.
        """
        if not self.download:
            return
        path = self.path
        if path.is_file() and _unreadable_zip(path):
            suffix = "" if self.size == 28 else f"_{self.size}"
            if _file_md5(path) != _info()[self.flag][f"MD5{suffix}"]:
                from lightning.pytorch.utilities import rank_zero_warn

                rank_zero_warn(f"{path} is damaged (not a readable .npz); downloading it again")
                path.unlink()
        if not path.is_file():
            download_medmnist(self.flag, self.size, self.root)

    def setup(self, stage: str | None = None) -> None:
        """Load the three splits and compute the normalization statistics on the training split."""
        if self._arrays is None:
            self._arrays = load_medmnist_npz(self.path, self.spec, self.size)
            if self.train_size is not None:
                self._arrays["train"] = self._train_subset(*self._arrays["train"])
        arrays = self._arrays
        self.mean, self.std = channel_stats(arrays["train"][0])
        kw: dict[str, Any] = {
            "mean": self.mean,
            "std": self.std,
            "multilabel": self.spec.multilabel,
        }
        self.splits = {
            "train": MedMNISTSplit(*arrays["train"], transform=self.augmentation, **kw),
            "train_eval": MedMNISTSplit(*arrays["train"], **kw),
            "val": MedMNISTSplit(*arrays["val"], **kw),
            "test": MedMNISTSplit(*arrays["test"], **kw),
        }

    def _train_subset(
        self, images: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        from reglight.subsets import stratified_subset

        assert self.train_size is not None
        if self.train_size > len(labels):
            raise ValueError(
                f"`train_size` must be at most the {len(labels)} training images of {self.flag}, got "
                f"{self.train_size}"
            )
        # multi-label: stratified on the first label
        index = np.sort(stratified_subset(labels[:, 0], self.train_size, self.subset_seed))
        return images[index], labels[index]

    def _loader(self, split: str, train: bool = False) -> DataLoader[tuple[Tensor, Tensor]]:
        if not self.splits:
            raise RuntimeError("call `setup()` before asking for a dataloader")
        return DataLoader(
            self.splits[split],
            batch_size=self.batch_size if train else self.eval_batch_size,
            shuffle=train,
            drop_last=train and len(self.splits[split]) > self.batch_size,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader[tuple[Tensor, Tensor]]:
        """Shuffled, augmented training batches."""
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader[tuple[Tensor, Tensor]]:
        """The validation split, not augmented."""
        return self._loader("val")

    def test_dataloader(self) -> list[DataLoader[tuple[Tensor, Tensor]]]:
        """The test split, the training split without augmentation and the validation split."""
        names = {"test": "test", "train": "train_eval", "val": "val"}
        return [self._loader(names[s]) for s in self.test_splits]
