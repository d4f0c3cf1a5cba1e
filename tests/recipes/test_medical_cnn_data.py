"""MedMNISTDataModule: MedMNIST's file format, clear errors, train-only normalization, augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from reglight.recipes.medical_cnn import (
    MEDMNIST_2D_FLAGS,
    MedMNISTDataModule,
    MedMNISTFileError,
    load_medmnist_npz,
    medical_augmentation,
    npz_filename,
    task_spec,
    write_synthetic_medmnist,
)


def _fake(
    tmp_path: Path, flag: str = "breastmnist", n: tuple[int, int, int] = (40, 10, 12)
) -> Path:
    return write_synthetic_medmnist(tmp_path / npz_filename(flag), flag, n_samples=n, seed=1)


def test_flags_and_task_spec_follow_medmnist_info() -> None:
    from medmnist import INFO

    assert "breastmnist" in MEDMNIST_2D_FLAGS and "pneumoniamnist" in MEDMNIST_2D_FLAGS
    assert not any(f.endswith("3d") for f in MEDMNIST_2D_FLAGS)
    for flag in MEDMNIST_2D_FLAGS:
        spec = task_spec(flag)
        assert spec.task == INFO[flag]["task"]
        assert spec.num_classes == len(INFO[flag]["label"])
        assert spec.n_channels == INFO[flag]["n_channels"]
    assert task_spec("breastmnist").n_samples == {"train": 546, "val": 78, "test": 156}
    assert task_spec("chestmnist").multilabel
    with pytest.raises(ValueError, match="flag"):
        task_spec("organmnist3d")


def test_file_names_follow_medmnist() -> None:
    assert npz_filename("breastmnist") == "breastmnist.npz"
    assert npz_filename("pathmnist", 224) == "pathmnist_224.npz"
    with pytest.raises(ValueError, match="size"):
        npz_filename("pathmnist", 32)


def test_synthetic_file_has_medmnist_format(tmp_path: Path) -> None:
    """Keys, dtypes and shapes as medmnist writes them (checked on the real file in the data test)."""
    for flag, img_shape, n_labels in [
        ("breastmnist", (28, 28), 1),
        ("pathmnist", (28, 28, 3), 1),
        ("chestmnist", (28, 28), 14),
    ]:
        path = _fake(tmp_path, flag, (6, 3, 4))
        with np.load(path) as npz:
            assert sorted(npz.files) == sorted(
                f"{s}_{k}" for s in ("train", "val", "test") for k in ("images", "labels")
            )
            assert npz["train_images"].dtype == np.uint8
            assert npz["train_images"].shape == (6, *img_shape)
            assert npz["val_labels"].shape == (3, n_labels)


def test_datamodule_on_generated_file(tmp_path: Path) -> None:
    _fake(tmp_path)
    dm = MedMNISTDataModule("breastmnist", root=str(tmp_path), batch_size=16, eval_batch_size=7)
    dm.prepare_data()  # file present: nothing is downloaded
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {
        "train": 40,
        "train_eval": 40,
        "val": 10,
        "test": 12,
    }
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (16, 1, 28, 28) and x.dtype == torch.float32
    assert y.shape == (16,) and y.dtype == torch.int64
    assert len(dm.train_dataloader()) == 40 // 16  # drop_last
    loaders = dm.test_dataloader()
    assert len(loaders) == len(dm.test_splits) == 3
    assert [len(dl.dataset) for dl in loaders] == [12, 40, 10]  # type: ignore[arg-type]


def test_normalization_uses_training_split_only(tmp_path: Path) -> None:
    path = _fake(tmp_path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["val_images"] = np.full_like(arrays["val_images"], 255)  # would shift the stats if used
    arrays["test_images"] = np.zeros_like(arrays["test_images"])
    np.savez(path, **arrays)
    dm = MedMNISTDataModule("breastmnist", root=str(tmp_path), augment=False)
    dm.setup("fit")
    train = arrays["train_images"].astype(np.float64) / 255
    assert dm.mean == pytest.approx((train.mean(),), abs=1e-9)
    assert dm.std == pytest.approx((train.std(),), abs=1e-9)
    xs = torch.cat([x for x, _ in dm.test_dataloader()[1]])  # train split, no augmentation
    assert xs.mean().item() == pytest.approx(0.0, abs=1e-5)
    assert xs.std(unbiased=False).item() == pytest.approx(1.0, abs=1e-4)
    xv = torch.cat([x for x, _ in dm.val_dataloader()])
    expected = (1.0 - train.mean()) / train.std()
    assert torch.allclose(xv, torch.full_like(xv, expected), atol=1e-5)


def test_rgb_and_multilabel_datasets(tmp_path: Path) -> None:
    _fake(tmp_path, "pathmnist", (20, 5, 5))
    dm = MedMNISTDataModule("pathmnist", root=str(tmp_path), batch_size=4)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 28, 28) and len(dm.mean or ()) == 3 and y.dtype == torch.int64
    _fake(tmp_path, "chestmnist", (20, 5, 5))
    dm = MedMNISTDataModule("chestmnist", root=str(tmp_path), batch_size=4)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert y.shape == (4, 14) and y.dtype == torch.float32


def test_missing_file_says_which_file_to_put_where(tmp_path: Path) -> None:
    dm = MedMNISTDataModule("breastmnist", size=64, root=str(tmp_path), download=False)
    dm.prepare_data()
    with pytest.raises(MedMNISTFileError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert str(tmp_path / "breastmnist_64.npz") in msg
    assert "742edef2a1fd1524b2efff4bd7ba9364" in msg  # the MD5 from medmnist.INFO
    assert "zenodo" in msg


def test_root_defaults_to_reglight_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGLIGHT_DATA", str(tmp_path))
    assert MedMNISTDataModule("breastmnist").path == tmp_path / "breastmnist.npz"
    monkeypatch.delenv("REGLIGHT_DATA")
    assert MedMNISTDataModule("breastmnist").root == Path("~/.medmnist").expanduser()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda a: a.pop("val_labels"), r"missing key\(s\) \['val_labels'\]"),
        (
            lambda a: a.update(train_images=a["train_images"][:, :20]),
            r"train_images.*\(N, 28, 28\)",
        ),
        (lambda a: a.update(test_images=a["test_images"].astype(np.float32)), "test_images.*uint8"),
        (lambda a: a.update(train_labels=a["train_labels"][:-1]), r"train_labels.*\(40, 1\)"),
        (lambda a: a.update(val_labels=a["val_labels"] + 2), r"val_labels.*\[0, 1\]"),
    ],
)
def test_bad_files_give_clear_errors(tmp_path: Path, edit: object, match: str) -> None:
    path = _fake(tmp_path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    edit(arrays)  # type: ignore[operator]
    np.savez(path, **arrays)
    with pytest.raises(MedMNISTFileError, match=match):
        load_medmnist_npz(path, task_spec("breastmnist"))


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":  # a download cut short
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"not a zip" * 100)
    else:  # one flipped byte inside the first array: the zip directory is intact, a CRC is not
        i = len(data) // 4
        path.write_bytes(data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :])


@pytest.mark.parametrize("how", ["truncated", "garbage", "flipped"])
def test_damaged_file_says_damaged_with_its_md5_against_medmnists(tmp_path: Path, how: str) -> None:
    import hashlib

    from medmnist import INFO

    path = _fake(tmp_path)
    _damage(path, how)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(MedMNISTFileError) as info:
        load_medmnist_npz(path, task_spec("breastmnist"))
    message = str(info.value)
    assert f"{path} is damaged" in message
    assert (
        f"its MD5 is {md5}, MedMNIST's breastmnist.npz has {INFO['breastmnist']['MD5']}" in message
    )
    assert "Delete it" in message
    assert "pickle" not in message


def test_damaged_file_is_downloaded_again_when_download_is_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network in tests: the download writes a good file, as Zenodo would."""
    import torchvision.datasets.utils as tv_utils

    root = tmp_path / "data"
    root.mkdir()
    path = _fake(root)
    good = path.read_bytes()
    _damage(path, "truncated")
    calls: list[str] = []

    def download_url(url: str, root: str, filename: str, md5: str) -> None:
        calls.append(filename)
        (Path(root) / filename).write_bytes(good)

    monkeypatch.setattr(tv_utils, "download_url", download_url)
    monkeypatch.setattr(tv_utils, "check_integrity", lambda *args: True)
    dm = MedMNISTDataModule("breastmnist", root=str(root), download=True)
    with pytest.warns(UserWarning, match="damaged"):
        dm.prepare_data()
    assert calls == ["breastmnist.npz"]
    dm.setup("fit")
    assert len(dm.splits["train"]) == 40

    _damage(path, "truncated")  # with download off: the error, and the file left in place
    off = MedMNISTDataModule("breastmnist", root=str(root), download=False)
    off.prepare_data()
    with pytest.raises(MedMNISTFileError, match="is damaged"):
        off.setup("fit")
    assert calls == ["breastmnist.npz"]


def test_download_failure_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No network in tests: the download function is replaced by one that fails like an offline machine."""
    import torchvision.datasets.utils as tv_utils

    def offline(*args: object, **kwargs: object) -> None:
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    dm = MedMNISTDataModule("breastmnist", root=str(tmp_path / "data"), download=True)
    with pytest.raises(MedMNISTFileError, match=r"Could not download breastmnist.npz.*OSError"):
        dm.prepare_data()


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"flag": "nomnist"}, "flag"),
        ({"size": 32}, "size"),
        ({"batch_size": 0}, "batch_size"),
        ({"rotation": -1.0}, "rotation"),
        ({"erasing": 1.5}, "erasing"),
        ({"magnitude": 2.0}, "magnitude"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ValueError, match=f"`{name}`"):
        MedMNISTDataModule(**kwargs)  # type: ignore[arg-type]


def test_augmentation_magnitude_scales_every_component() -> None:
    from torchvision.transforms import v2

    from reglight.callbacks import AugmentationScheduler

    aug = medical_augmentation(
        rotation=20.0, translate=0.2, scale=0.1, hflip=True, vflip=True, erasing=0.4,
        rand_augment_ops=2, rand_augment_magnitude=10, magnitude=0.5, group="test_mc",
    )  # fmt: skip
    hflip, vflip, affine, rand_augment, erasing = aug.transform.transforms
    assert isinstance(affine, v2.RandomAffine) and isinstance(rand_augment, v2.RandAugment)
    assert affine.degrees == [-10.0, 10.0]
    assert affine.translate == [0.1, 0.1]
    assert affine.scale == pytest.approx([0.95, 1.05])
    assert hflip.p == vflip.p == 0.25
    assert erasing.p == pytest.approx(0.2)
    assert rand_augment.magnitude == 5
    img = torch.randint(0, 256, (1, 28, 28), dtype=torch.uint8)
    out = aug(img)
    assert out.shape == img.shape and out.dtype == torch.uint8
    # the library's scheduler drives it (written now, read at the next image)
    AugmentationScheduler(magnitude=1.0, group="test_mc").apply(0)
    aug(img)
    assert affine.degrees == [-20.0, 20.0] and rand_augment.magnitude == 10 and hflip.p == 0.5
    geometric = medical_augmentation(rotation=30.0, translate=0.2, vflip=True, group="test_mc")
    AugmentationScheduler(magnitude=0.0, group="test_mc").apply(0)
    assert all(torch.equal(geometric(img), img) for _ in range(10))  # magnitude 0: identity
    AugmentationScheduler(magnitude=1.0, group="test_mc").apply(0)
    assert not all(torch.equal(geometric(img), img) for _ in range(10))
    with pytest.raises(ValueError, match="rotation"):
        medical_augmentation(rotation=-5.0)


def test_augmentation_changes_training_images_only(tmp_path: Path) -> None:
    _fake(tmp_path)
    dm = MedMNISTDataModule("breastmnist", root=str(tmp_path), rotation=30.0, translate=0.2)
    dm.setup("fit")
    torch.manual_seed(0)
    a, b = dm.splits["train"][0][0], dm.splits["train"][0][0]
    assert not torch.equal(a, b)
    assert torch.equal(dm.splits["train_eval"][0][0], dm.splits["train_eval"][0][0])


@pytest.mark.data
def test_real_breastmnist(data_dir: Path) -> None:
    dm = MedMNISTDataModule("breastmnist", root=str(data_dir), download=False)
    dm.setup("fit")
    assert {k: len(v) for k, v in dm.splits.items()} == {
        "train": 546,
        "train_eval": 546,
        "val": 78,
        "test": 156,
    }
    with np.load(data_dir / "breastmnist.npz") as npz:
        assert npz["train_images"].dtype == np.uint8 and npz["train_images"].shape == (546, 28, 28)
        assert npz["train_labels"].shape == (546, 1)
        assert dm.mean == pytest.approx((npz["train_images"].mean() / 255,))
