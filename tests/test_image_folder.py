"""ImageFolder (your own images, one folder per class) and the ImageNet preprocessing
transforms (Resize, CenterCrop, IMAGENET_MEAN/STD). Every image is made by the test."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

import minires as mr
from minires.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    CenterCrop,
    Compose,
    DataLoader,
    DatasetError,
    ImageFolder,
    Normalize,
    Resize,
    get_dataset,
)


def write_image(path, array, mode=None):
    """Save an (H, W, 3) or (H, W) uint8 array as an image file (format by extension)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(array, mode).save(path)


def tiny_folder(root, size=(6, 8), seed=0):
    """root/<class>/... : 3 classes, PNG (lossless), one in a subfolder, one greyscale.

    Returns {path: (H, W, 3) uint8 pixels as they should load}.
    """
    rng = np.random.default_rng(seed)
    pixels = {}
    layout = {"zebra": ["b.png", "a.png"], "ant": ["x.png", "deep/y.png"], "cat": ["c.png"]}
    for cls, names in layout.items():
        for name in names:
            path = os.path.join(root, cls, name)
            array = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
            write_image(path, array)
            pixels[path] = array
    grey = rng.integers(0, 256, size=size, dtype=np.uint8)
    write_image(os.path.join(root, "cat", "grey.png"), grey)
    pixels[os.path.join(root, "cat", "grey.png")] = np.repeat(grey[:, :, None], 3, axis=2)
    (root / "cat" / "notes.txt").write_text("not an image")
    return pixels


def test_classes_are_sorted_folders_and_pixels_load_exactly(tmp_path):
    pixels = tiny_folder(tmp_path)
    ds = ImageFolder(tmp_path)
    assert ds.classes == ["ant", "cat", "zebra"] and ds.class_to_idx["zebra"] == 2
    assert ds.data.shape == (6, 3, 6, 8) and ds.data.dtype == np.uint8
    assert ds.targets.tolist() == [0, 0, 1, 1, 2, 2] and ds.targets.dtype == np.int64
    names = [os.path.relpath(path, tmp_path) for path, _ in ds.samples]
    # torchvision's order: by folder path, then by name (a class folder before its subfolders)
    assert names == [os.path.join("ant", "x.png"), os.path.join("ant", "deep", "y.png"),
                     os.path.join("cat", "c.png"), os.path.join("cat", "grey.png"),
                     os.path.join("zebra", "a.png"), os.path.join("zebra", "b.png")]
    for i, (path, _) in enumerate(ds.samples):
        np.testing.assert_array_equal(ds.data[i], pixels[path].transpose(2, 0, 1))
    image, label = ds[3]
    assert label == 1 and image.shape == (3, 6, 8)


def test_jpeg_and_rgba_images_decode_to_rgb(tmp_path):
    rng = np.random.default_rng(1)
    write_image(str(tmp_path / "a" / "photo.JPG"), rng.integers(0, 256, (5, 5, 3), np.uint8))
    rgba = rng.integers(0, 256, (5, 5, 4), np.uint8)
    write_image(str(tmp_path / "b" / "icon.png"), rgba, "RGBA")
    ds = ImageFolder(tmp_path)
    assert ds.data.shape == (2, 3, 5, 5)
    np.testing.assert_array_equal(ds.data[1], rgba[:, :, :3].transpose(2, 0, 1))


def test_the_data_loader_batches_an_image_folder_with_its_transform(tmp_path):
    tiny_folder(tmp_path)
    ds = ImageFolder(tmp_path, transform=Normalize((0.5,), (0.5,)))
    batches = list(DataLoader(ds, batch_size=4))
    assert [tuple(x.shape) for x, _ in batches] == [(4, 3, 6, 8), (2, 3, 6, 8)]
    np.testing.assert_allclose(batches[0][0].numpy(), (ds.data[:4] / 255.0 - 0.5) / 0.5,
                               atol=1e-6)
    assert batches[1][1].numpy().tolist() == [2, 2]


def test_size_resizes_each_image_at_load_keeping_its_aspect_and_cropping_the_centre(tmp_path):
    rng = np.random.default_rng(2)
    wide = rng.integers(0, 256, (20, 40, 3), np.uint8)
    write_image(str(tmp_path / "a" / "wide.png"), wide)
    write_image(str(tmp_path / "b" / "tall.png"), rng.integers(0, 256, (30, 10, 3), np.uint8))
    ds = ImageFolder(tmp_path, size=10)
    assert ds.data.shape == (2, 3, 10, 10)
    # the wide image: shorter side 20 -> 10 (Pillow's bilinear), then its centre 10 columns
    expected = np.asarray(Image.fromarray(wide).resize((20, 10), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ds.data[0], expected[:, 5:15].transpose(2, 0, 1))
    assert ImageFolder(tmp_path, size=(8, 12)).data.shape == (2, 3, 8, 12)


def test_mixed_sizes_without_a_resize_are_an_error_naming_both_files(tmp_path):
    write_image(str(tmp_path / "a" / "small.png"), np.zeros((4, 4, 3), np.uint8))
    write_image(str(tmp_path / "b" / "big.png"), np.zeros((5, 6, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"images differ in size: .*small.png is 4x4 but "
                                           r".*big.png is 6x5 \(width x height\). Pass size="):
        ImageFolder(tmp_path)


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"nope is not a folder"):
        ImageFolder(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"no class folders in .*Expected one folder per class"):
        ImageFolder(tmp_path)
    write_image(str(tmp_path / "loose.png"), np.zeros((2, 2, 3), np.uint8))
    with pytest.raises(DatasetError, match=r"holds 1 images directly: move them into one "
                                           r"folder per class"):
        ImageFolder(tmp_path)
    write_image(str(tmp_path / "cat" / "a.png"), np.zeros((2, 2, 3), np.uint8))
    os.makedirs(tmp_path / "dog")
    (tmp_path / "dog" / "readme.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"class folder .*dog holds no images"):
        ImageFolder(tmp_path)


def test_an_unreadable_or_truncated_image_is_named(tmp_path):
    write_image(str(tmp_path / "a" / "good.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "a" / "fake.png").write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match=r"cannot decode .*fake.png .*not an image Pillow"):
        ImageFolder(tmp_path)
    (tmp_path / "a" / "fake.png").unlink()
    write_image(str(tmp_path / "a" / "cut.jpg"),
                np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8))
    data = (tmp_path / "a" / "cut.jpg").read_bytes()
    (tmp_path / "a" / "cut.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"cannot decode .*cut.jpg"):
        ImageFolder(tmp_path)


def test_get_dataset_reads_train_and_val_splits_of_an_image_folder(tmp_path):
    tiny_folder(tmp_path / "train")
    tiny_folder(tmp_path / "val", seed=1)
    train = get_dataset(f"imagefolder:{tmp_path}")
    test = get_dataset("imagefolder", train=False, root=tmp_path, size=4)
    assert isinstance(train, ImageFolder) and len(train) == 6 and train.data.shape[2:] == (6, 8)
    assert test.root == str(tmp_path / "val") and test.data.shape[2:] == (4, 4)
    with pytest.raises(DatasetError, match=r"no 'val' or 'test' folder in it"):
        get_dataset(f"imagefolder:{tmp_path / 'train'}", train=False)
    with pytest.raises(ValueError, match="say where the images are"):
        get_dataset("imagefolder")
    with pytest.raises(ValueError, match="size= resizes image folders"):
        get_dataset("cifar10-sample", size=32)
    with pytest.raises(ValueError, match="imagefolder:PATH"):
        get_dataset("svhn")


# --------------------------------------------------------------------------- transforms


def test_resize_matches_pytorchs_antialiased_bilinear_interpolation():
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(3).random((2, 3, 37, 50), dtype=np.float32)
    for size, antialias in [(16, True), ((20, 9), True), (80, False), ((40, 61), True),
                            ((18, 25), False)]:
        ours = Resize(size, antialias=antialias)(x)
        target = size if isinstance(size, tuple) else (size, int(size * 50 / 37))
        theirs = torch.nn.functional.interpolate(torch.from_numpy(x), size=target,
                                                 mode="bilinear", align_corners=False,
                                                 antialias=antialias).numpy()
        assert ours.shape == theirs.shape, size
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=str(size))


def test_resize_keeps_the_aspect_ratio_of_the_shorter_side_like_torchvision():
    assert Resize(256).output_size(375, 500) == (256, 341)
    assert Resize(256).output_size(500, 375) == (341, 256)
    x = np.ones((1, 3, 10, 10), np.float32)
    assert Resize(10)(x) is x  # nothing to do
    np.testing.assert_allclose(Resize(4)(x), 1.0, rtol=1e-6)  # weights sum to one
    with pytest.raises(TypeError, match="Resize: expected float images"):
        Resize(4)(np.ones((1, 3, 10, 10), np.uint8))
    with pytest.raises(ValueError, match="positive int"):
        Resize(0)


def test_center_crop_takes_the_middle_with_torchvisions_rounding():
    x = np.arange(2 * 3 * 7 * 9, dtype=np.float32).reshape(2, 3, 7, 9)
    out = CenterCrop(4)(x)
    np.testing.assert_array_equal(out, x[:, :, 2:6, 2:6])  # round(1.5) = 2, round(2.5) = 2
    np.testing.assert_array_equal(CenterCrop((7, 3))(x), x[:, :, :, 3:6])
    with pytest.raises(ValueError, match=r"CenterCrop: crop size \(8, 8\) is larger"):
        CenterCrop(8)(x)


def test_imagenet_preprocessing_pipeline_on_a_batch():
    x = np.random.default_rng(4).random((2, 3, 300, 400), dtype=np.float32)
    out = Compose([Resize(256), CenterCrop(224), Normalize(IMAGENET_MEAN, IMAGENET_STD)])(x)
    assert out.shape == (2, 3, 224, 224) and out.dtype == np.float32
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406) and IMAGENET_STD == (0.229, 0.224, 0.225)
    assert mr.data.transforms.IMAGENET_MEAN is IMAGENET_MEAN
