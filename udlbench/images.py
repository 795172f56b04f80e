"""Natural images shipped with scikit-image, as grayscale tensors in [0, 1], with a fixed split.

The papers denoise BSD/Set12-style images (Tolooshams & Ba, TMLR 2023, Sec. 4.3 and App. C.3;
Tolooshams, Song, Temereanca & Ba, ICML 2020, Sec. 5.1). Nothing can be downloaded here, so
udlbench uses the photographs that ``skimage.data`` ships. The split is fixed and documented:

* ``test``: camera, astronaut, coins, chelsea. ``skimage.data.cat`` is the same photograph as
  ``chelsea`` and is therefore in neither list;
* ``train``: every other natural grayscale-convertible image of ``skimage.data`` that needs no
  download (see :data:`SPLIT`).

No test image, and no crop of one, is ever used for training: :func:`random_crops` draws from the
images it is given, and the experiments give it ``load_split("train")`` only.

Photographs that are not shipped (BSD432 / BSD68, Set12) are read from a directory given by the
user with :func:`load_directory`, converted to grayscale in [0, 1] exactly as :func:`load` does.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from udlbench._validation import check_choice, check_positive, check_positive_int, check_tensor

SPLIT: dict[str, tuple[str, ...]] = {
    "train": (
        "brick",
        "clock",
        "coffee",
        "grass",
        "gravel",
        "hubble_deep_field",
        "immunohistochemistry",
        "moon",
        "page",
        "retina",
        "rocket",
        "text",
    ),
    "test": ("camera", "astronaut", "coins", "chelsea"),
}
IMAGES = SPLIT["train"] + SPLIT["test"]
#: File suffixes read by :func:`load_directory` (compared case-insensitively).
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff")


def _grayscale(image: np.ndarray, source: str) -> np.ndarray:
    """An image array as a (H, W) float array in [0, 1]: colour (H, W, 3 or 4) through
    ``skimage.color.rgb2gray`` (alpha dropped), grayscale (H, W), (H, W, 1) or (H, W, 2) (alpha
    dropped) divided by 255 for 8-bit and 65535 for 16-bit pixels; floating-point pixels must
    already lie in [0, 1]. ``source`` names the image in error messages."""
    import skimage.color

    if image.ndim == 3 and image.shape[-1] in (3, 4):
        return skimage.color.rgb2gray(image[..., :3])
    if image.ndim == 3 and image.shape[-1] in (1, 2):
        image = image[..., 0]
    if image.ndim != 2:
        raise ValueError(
            f"{source} has shape {image.shape}; expected a grayscale (H, W) or colour (H, W, 3 "
            "or 4) image."
        )
    if image.dtype == np.uint8:
        return image / 255.0
    if image.dtype == np.uint16:
        return image / 65535.0
    if image.dtype.kind == "f" and image.size and 0 <= image.min() and image.max() <= 1:
        return image
    raise ValueError(
        f"{source} has pixels of type {image.dtype}; expected 8-bit or 16-bit unsigned integers, "
        "or floating-point values in [0, 1]."
    )


def load(name: str, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The image ``skimage.data.<name>`` as a (H, W) tensor in [0, 1] (colour images converted
    with ``skimage.color.rgb2gray``, 8-bit images divided by 255)."""
    check_choice("image", name, IMAGES)
    import skimage.data

    image = _grayscale(getattr(skimage.data, name)(), f"skimage.data.{name}")
    return torch.as_tensor(np.ascontiguousarray(image), dtype=dtype)


def image_files(directory: str | os.PathLike) -> list[Path]:
    """The image files (suffix in :data:`IMAGE_SUFFIXES`) directly inside ``directory``, sorted
    by file name; sub-directories and other files are ignored."""
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"directory must be an existing directory; got {os.fspath(directory)!r}.")
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(found, key=lambda p: p.name)


def load_directory(
    directory: str | os.PathLike, *, dtype: torch.dtype = torch.float32
) -> list[tuple[str, torch.Tensor]]:
    """Every image file of ``directory`` (see :func:`image_files`) as ``(stem, image)`` pairs.

    For photographs that no installed package ships, such as BSD432 / BSD68 (Martin et al.,
    ICCV 2001), the training and test sets of TMLR 2023, Sec. 4.3 and App. C.3. Each file is read
    with ``skimage.io.imread`` and converted like :func:`load`: colour through
    ``skimage.color.rgb2gray``, 8-bit pixels divided by 255, 16-bit pixels by 65535.

    Parameters
    ----------
    directory : str or path
        A directory holding at least one ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif`` or
        ``.tiff`` file (any letter case).
    dtype : torch.float32 or torch.float64

    Returns
    -------
    list of (str, Tensor of shape (H, W))
        The file stem (the image's name) and the image in [0, 1], sorted by file name.
    """
    files = image_files(directory)
    if not files:
        raise ValueError(
            f"directory {os.fspath(directory)!r} holds no image file; expected files ending in "
            f"{', '.join(IMAGE_SUFFIXES)}."
        )
    stems = [p.stem for p in files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ValueError(
            f"directory {os.fspath(directory)!r} holds several files named {repeated} (with "
            "different suffixes); image names (file stems) must be unique."
        )
    import skimage.io

    return [
        (path.stem, torch.as_tensor(
            np.ascontiguousarray(_grayscale(skimage.io.imread(path), str(path))), dtype=dtype
        ))
        for path in files
    ]


def load_split(split: str, *, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """The images of ``split`` in {"train", "test"}, in the order of :data:`SPLIT`."""
    check_choice("split", split, tuple(SPLIT))
    return [load(name, dtype=dtype) for name in SPLIT[split]]


def random_crops(
    images: Sequence[torch.Tensor],
    *,
    n: int,
    size: int,
    generator: torch.Generator,
    flips: bool = True,
) -> torch.Tensor:
    """``n`` random ``size x size`` crops of the (H, W) ``images``, shape (n, 1, size, size).

    Each crop picks an image uniformly, then a position uniformly, then (with ``flips``) a
    horizontal and a vertical flip each with probability 1/2 (the augmentation of TMLR 2023,
    App. C.3). ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible; the flips
    are drawn in float32 whatever torch's default dtype, so a generator state always gives the
    same crops.
    """
    check_positive_int("n", n)
    check_positive_int("size", size)
    if not images:
        raise ValueError("images is empty; pass at least one (H, W) image.")
    for k, image in enumerate(images):
        check_tensor(f"images[{k}]", image, ndim=2)
        if min(image.shape) < size:
            raise ValueError(
                f"images[{k}] has shape {tuple(image.shape)}, smaller than the crop size {size}."
            )
    crops = []
    for _ in range(n):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        top = int(torch.randint(image.shape[0] - size + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[1] - size + 1, (1,), generator=generator))
        crop = image[top : top + size, left : left + size]
        if flips:
            flip_h, flip_v = torch.rand(2, generator=generator, dtype=torch.float32).tolist()
            if flip_h < 0.5:
                crop = crop.flip(1)
            if flip_v < 0.5:
                crop = crop.flip(0)
        crops.append(crop)
    return torch.stack(crops).unsqueeze(1)


def gaussian_noise(
    clean: torch.Tensor, *, sigma: float, generator: torch.Generator
) -> torch.Tensor:
    """``clean + sigma * N(0, 1)``; ``sigma`` on the [0, 1] scale (``25 / 255`` for the papers'
    sigma = 25). The noise is drawn on the CPU generator and moved to ``clean``'s device."""
    check_tensor("clean", clean)
    sigma = check_positive("sigma", sigma)
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return clean + (sigma * noise).to(dtype=clean.dtype, device=clean.device)


def poisson_counts(
    clean: torch.Tensor, *, peak: float, generator: torch.Generator
) -> torch.Tensor:
    """Counts ``y ~ Poisson(peak * clean)`` for ``clean`` in [0, 1] (ICML 2020, Sec. 5.1: the
    image is scaled so that its maximum intensity is ``peak``)."""
    check_tensor("clean", clean)
    peak = check_positive("peak", peak)
    if bool((clean < 0).any()):
        raise ValueError("clean must be non-negative (an intensity image in [0, 1]).")
    rate = (peak * clean).detach().to(device="cpu", dtype=torch.float64)
    return torch.poisson(rate, generator=generator).to(dtype=clean.dtype, device=clean.device)


__all__ = [
    "IMAGES",
    "IMAGE_SUFFIXES",
    "SPLIT",
    "gaussian_noise",
    "image_files",
    "load",
    "load_directory",
    "load_split",
    "poisson_counts",
    "random_crops",
]
