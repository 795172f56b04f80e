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
"""

from __future__ import annotations

from collections.abc import Sequence

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


def load(name: str, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The image ``skimage.data.<name>`` as a (H, W) tensor in [0, 1] (colour images converted
    with ``skimage.color.rgb2gray``, 8-bit images divided by 255)."""
    check_choice("image", name, IMAGES)
    import skimage.color
    import skimage.data

    image = getattr(skimage.data, name)()
    if image.ndim == 3:
        image = skimage.color.rgb2gray(image[..., :3])
    elif image.dtype == np.uint8:
        image = image / 255.0
    return torch.as_tensor(np.ascontiguousarray(image), dtype=dtype)


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
    App. C.3). ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible.
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
            flip_h, flip_v = torch.rand(2, generator=generator).tolist()
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
    "SPLIT",
    "gaussian_noise",
    "load",
    "load_split",
    "poisson_counts",
    "random_crops",
]
