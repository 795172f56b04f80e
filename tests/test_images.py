"""Tests of udlbench.images.load_directory and image_files: user-supplied photographs (BSD432 /
BSD68 layout) read and converted to grayscale in [0, 1] like the shipped skimage images."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.color
import skimage.data
import skimage.io
import torch

from udlbench import images


def _pixels(shape: tuple[int, ...], seed: int, dtype=np.uint8) -> np.ndarray:
    top = np.iinfo(dtype).max
    return np.random.default_rng(seed).integers(0, top, size=shape, endpoint=True, dtype=dtype)


def test_load_directory_converts_like_load(tmp_path, dtype):
    gray, colour, deep = _pixels((9, 7), 0), _pixels((6, 8, 3), 1), _pixels((5, 5), 2, np.uint16)
    skimage.io.imsave(tmp_path / "b_gray.png", gray, check_contrast=False)
    skimage.io.imsave(tmp_path / "a_colour.PNG", colour, check_contrast=False)
    skimage.io.imsave(tmp_path / "c_deep.tif", deep, check_contrast=False)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "nested.png").mkdir()  # a directory, not a file

    loaded = images.load_directory(tmp_path, dtype=dtype)

    assert [name for name, _ in loaded] == ["a_colour", "b_gray", "c_deep"]
    expected = [skimage.color.rgb2gray(colour), gray / 255.0, deep / 65535.0]
    for (_, image), want in zip(loaded, expected, strict=True):
        assert image.dtype == dtype and image.shape == want.shape
        torch.testing.assert_close(image, torch.as_tensor(want, dtype=dtype), rtol=0, atol=0)
        assert 0 <= float(image.min()) and float(image.max()) <= 1
    assert [p.name for p in images.image_files(tmp_path)] == [
        "a_colour.PNG", "b_gray.png", "c_deep.tif"]


def test_load_keeps_the_skimage_conversion():
    """The shared conversion leaves :func:`images.load` as it was: rgb2gray for colour, /255 for
    8-bit grayscale."""
    torch.testing.assert_close(
        images.load("coins", dtype=torch.float64),
        torch.as_tensor(skimage.data.coins() / 255.0), rtol=0, atol=0)
    torch.testing.assert_close(
        images.load("chelsea", dtype=torch.float64),
        torch.as_tensor(skimage.color.rgb2gray(skimage.data.chelsea())), rtol=0, atol=0)


def test_load_directory_refuses_missing_empty_and_ambiguous_directories(tmp_path):
    with pytest.raises(ValueError, match="directory must be an existing directory; got '.*absent'"):
        images.load_directory(tmp_path / "absent")
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"directory '.*' holds no image file; expected files "
                                         r"ending in \.bmp, \.jpeg"):
        images.load_directory(tmp_path)
    skimage.io.imsave(tmp_path / "x.png", _pixels((4, 4), 3), check_contrast=False)
    skimage.io.imsave(tmp_path / "x.bmp", _pixels((4, 4), 4), check_contrast=False)
    with pytest.raises(ValueError, match=r"several files named \['x'\]"):
        images.load_directory(tmp_path)


def test_load_directory_refuses_float_pixels_outside_the_unit_range(tmp_path):
    skimage.io.imsave(tmp_path / "f.tif", np.full((5, 6), 2.5, dtype=np.float32),
                      check_contrast=False)
    with pytest.raises(ValueError, match=r"f\.tif has pixels of type float32; expected 8-bit"):
        images.load_directory(tmp_path)


def test_random_crops_do_not_depend_on_the_default_dtype():
    """The theorem suite sets torch's default dtype to float64 and the runner leaves it float32:
    the same generator state must give the same crops and flips under both."""
    image = torch.arange(40 * 50, dtype=torch.float64).reshape(40, 50) / 2000

    def crops():
        return images.random_crops([image], n=20, size=7,
                                   generator=torch.Generator().manual_seed(5))

    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32)
        single = crops()
        torch.set_default_dtype(torch.float64)
        double = crops()
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(single, double)
    flipped = [not any(torch.equal(c[0], image[i:i + 7, j:j + 7])
                       for i in range(34) for j in range(44)) for c in single]
    assert 0 < sum(flipped) < len(flipped)  # some crops are flipped, some are not
