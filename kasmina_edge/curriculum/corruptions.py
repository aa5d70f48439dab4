"""Fifteen image corruptions in the manner of MNIST-C (Mu & Gilmer 2019), sized for 8x8 digits.

Every corruption is ``f(images, severity, rng) -> images``: ``images`` (n, H, W) floats in [0, 1] (ink
bright, background 0, as scikit-learn's digits divided by 16), ``severity`` 1..5, ``rng`` a numpy
Generator (each image draws its own parameters from it, so a seed fixes the result). The output has the
input's shape and stays in [0, 1]. Written with numpy and scipy.ndimage only; MNIST-C's own code needs
Wand/ImageMagick and skimage and works on 28x28 images, so the parameters here are re-scaled by hand to
8 pixels (a one-pixel shift on 8x8 is what three pixels are on 28x28).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

from kasmina_edge.contracts.errors import KasminaError

Corruption = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
SEVERITIES = (1, 2, 3, 4, 5)


def _level(values: tuple[float, ...], severity: int) -> float:
    if severity not in SEVERITIES:
        raise KasminaError(f"corruption severity {severity!r}: must be one of {SEVERITIES}")
    return values[severity - 1]


def _each(images: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    return np.stack([fn(im) for im in images]).astype(np.float32)


def _affine(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """``img`` resampled through ``matrix`` (output -> input coordinates) about the image centre."""
    centre = (np.array(img.shape) - 1) / 2.0
    offset = centre - matrix @ centre
    return ndimage.affine_transform(img, matrix, offset=offset, order=1, mode="constant", cval=0.0)


def _clip(images: np.ndarray) -> np.ndarray:
    return np.clip(images, 0.0, 1.0).astype(np.float32)


# -- noise ------------------------------------------------------------------------------------------------
def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Poisson photon noise: fewer photons per unit of ink at higher severity."""
    lam = _level((30.0, 15.0, 8.0, 4.0, 2.5), severity)
    return _clip(rng.poisson(images * lam + 0.3) / lam)  # + 0.3: the background also collects stray photons


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Salt and pepper: a fraction of pixels flipped to the far extreme (salt on background, pepper on ink;
    with only 64 pixels, a 0 set to 0 would waste the few hits a mild severity gets)."""
    frac = _level((0.05, 0.08, 0.12, 0.18, 0.25), severity)
    hit = rng.random(images.shape) < frac
    return _clip(np.where(hit, (images < 0.5).astype(np.float32), images))


def glass_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian blur, then each pixel swapped with a random neighbour (frosted glass), then blurred again."""
    sigma = _level((0.4, 0.5, 0.6, 0.7, 0.8), severity)
    swaps = int(_level((6, 10, 14, 20, 28), severity))

    def one(img: np.ndarray) -> np.ndarray:
        out = ndimage.gaussian_filter(img, sigma)
        h, w = out.shape
        for _ in range(swaps):
            y, x = rng.integers(1, h - 1), rng.integers(1, w - 1)
            dy, dx = rng.integers(-1, 2, 2)
            out[y, x], out[y + dy, x + dx] = out[y + dy, x + dx], out[y, x]
        return ndimage.gaussian_filter(out, sigma / 2)

    return _clip(_each(images, one))


def motion_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A line kernel of some length at a random angle (the camera moved while the shutter was open)."""
    length = int(_level((2, 3, 3, 4, 5), severity))

    def one(img: np.ndarray) -> np.ndarray:
        k = np.zeros((2 * length + 1, 2 * length + 1), np.float32)
        k[length, length:] = 1.0  # one-sided: the image is smeared in one direction
        k = ndimage.rotate(k, rng.uniform(0, 180), reshape=False, order=1)
        return ndimage.convolve(img, k / max(k.sum(), 1e-6), mode="constant")

    return _clip(_each(images, one))


# -- geometry ---------------------------------------------------------------------------------------------
def shear(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    s = _level((0.2, 0.35, 0.5, 0.65, 0.8), severity)
    return _clip(_each(images, lambda im: _affine(im, np.array([[1.0, 0.0], [rng.choice([-s, s]), 1.0]]))))


def scale(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Zoomed out (smaller digit) or in (cropped digit) about the centre."""
    z = _level((0.15, 0.25, 0.35, 0.45, 0.55), severity)
    return _clip(_each(images, lambda im: _affine(im, np.eye(2) / rng.choice([1.0 - z, 1.0 + z]))))


def rotate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    deg = _level((12.0, 20.0, 28.0, 36.0, 45.0), severity)
    return _clip(_each(images, lambda im: ndimage.rotate(im, rng.choice([-deg, deg]), reshape=False, order=1)))


def translate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Shifted by a pixel or more in a random direction (ink leaving the frame is lost)."""
    d = _level((0.75, 1.0, 1.25, 1.5, 2.0), severity)

    def one(img: np.ndarray) -> np.ndarray:
        a = rng.uniform(0, 2 * np.pi)
        return ndimage.shift(img, (d * np.sin(a), d * np.cos(a)), order=1, mode="constant")

    return _clip(_each(images, one))


# -- photometric ------------------------------------------------------------------------------------------
def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """The whole image lifted towards white (the background is no longer 0)."""
    b = _level((0.15, 0.25, 0.35, 0.45, 0.55), severity)
    return _clip(images + b)


def fog(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth low-frequency haze added (fractal noise in MNIST-C; a smoothed random field here)."""
    a = _level((0.3, 0.45, 0.6, 0.75, 0.9), severity)

    def one(img: np.ndarray) -> np.ndarray:
        field = ndimage.zoom(rng.random((3, 3)), np.array(img.shape) / 3.0, order=1)
        return img + a * field[: img.shape[0], : img.shape[1]]

    return _clip(_each(images, one))


def canny_edges(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Only the strokes' edges remain: Sobel gradient magnitude after a Gaussian (Canny's first steps),
    kept above a threshold; the severity mixes less of the original back in."""
    keep = _level((0.5, 0.35, 0.2, 0.1, 0.0), severity)

    def one(img: np.ndarray) -> np.ndarray:
        smooth = ndimage.gaussian_filter(img, 0.5)
        mag = np.hypot(ndimage.sobel(smooth, 0), ndimage.sobel(smooth, 1))
        edges = (mag > 0.5 * mag.max()).astype(np.float32) if mag.max() > 0 else mag
        return keep * img + (1 - keep) * edges

    return _clip(_each(images, one))


# -- occluders --------------------------------------------------------------------------------------------
def stripe(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A vertical band of columns inverted (MNIST-C's stripe)."""
    width = int(_level((1, 1, 2, 2, 3), severity))

    def one(img: np.ndarray) -> np.ndarray:
        out = img.copy()
        x = rng.integers(2, img.shape[1] - 1 - width)
        out[:, x : x + width] = 1.0 - out[:, x : x + width]
        return out

    return _clip(_each(images, one))


def _line(shape: tuple[int, int], p0: np.ndarray, p1: np.ndarray, samples: int = 32) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(0.0, 1.0, samples)
    ys = np.clip(np.round(p0[0] + t * (p1[0] - p0[0])), 0, shape[0] - 1).astype(int)
    xs = np.clip(np.round(p0[1] + t * (p1[1] - p0[1])), 0, shape[1] - 1).astype(int)
    return ys, xs


def dotted_line(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A dotted line drawn across the image from one edge to another."""
    n_lines = int(_level((1, 1, 2, 2, 3), severity))
    ink = _level((0.6, 0.8, 0.8, 1.0, 1.0), severity)

    def one(img: np.ndarray) -> np.ndarray:
        out = img.copy()
        h, w = img.shape
        for _ in range(n_lines):
            p0, p1 = rng.uniform(0, [h - 1, w - 1]), rng.uniform(0, [h - 1, w - 1])
            p0[rng.integers(0, 2)] = 0.0  # start on an edge
            ys, xs = _line(img.shape, p0, p1 if np.abs(p1 - p0).sum() > 3 else np.array([h - 1, w - 1.0]))
            pts = np.unique(np.stack([ys, xs], 1), axis=0)[::2]  # every other pixel: dotted
            out[pts[:, 0], pts[:, 1]] = np.maximum(out[pts[:, 0], pts[:, 1]], ink)
        return out

    return _clip(_each(images, one))


def zigzag(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """A zigzag stroke across the image (three or more connected segments)."""
    n_seg = int(_level((2, 3, 3, 4, 5), severity))
    ink = _level((0.5, 0.6, 0.8, 0.9, 1.0), severity)

    def one(img: np.ndarray) -> np.ndarray:
        canvas = np.zeros_like(img)
        h, w = img.shape
        xs_knots = np.linspace(0, w - 1, n_seg + 1)
        ys_knots = rng.uniform(0, h - 1, n_seg + 1)
        for i in range(n_seg):
            ys, xs = _line(img.shape, np.array([ys_knots[i], xs_knots[i]]), np.array([ys_knots[i + 1], xs_knots[i + 1]]))
            canvas[ys, xs] = ink
        return np.maximum(img, canvas.T if rng.random() < 0.5 else canvas)  # horizontal or vertical

    return _clip(_each(images, one))


def spatter(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Blots of ink: thresholded smooth noise, added where it rises above a level."""
    thresh = _level((0.75, 0.7, 0.65, 0.6, 0.55), severity)

    def one(img: np.ndarray) -> np.ndarray:
        field = ndimage.gaussian_filter(rng.random(img.shape), 0.7)
        field = (field - field.min()) / max(float(np.ptp(field)), 1e-6)
        return np.maximum(img, (field > thresh).astype(np.float32) * 0.9)

    return _clip(_each(images, one))


CORRUPTIONS: dict[str, Corruption] = {
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "shear": shear,
    "scale": scale,
    "rotate": rotate,
    "brightness": brightness,
    "translate": translate,
    "stripe": stripe,
    "fog": fog,
    "spatter": spatter,
    "dotted_line": dotted_line,
    "zigzag": zigzag,
    "canny_edges": canny_edges,
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """``images`` under the named corruption, deterministically for a given seed."""
    if name not in CORRUPTIONS:
        raise KasminaError(f"corruption {name!r}: unknown; choose one of: {', '.join(CORRUPTIONS)}")
    if images.ndim != 3:
        raise KasminaError(f"corruption {name!r}: images must be (n, H, W), got shape {images.shape}")
    return CORRUPTIONS[name](np.asarray(images, dtype=np.float32), severity, np.random.default_rng(seed))


def corrupt_mixed(images: np.ndarray, names: list[str], severity: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Each image under one corruption drawn from ``names``; returns the images and which corruption
    (index into ``names``) each got."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(names), len(images))
    out = np.empty_like(images, dtype=np.float32)
    for k, name in enumerate(names):
        sel = np.flatnonzero(which == k)
        if len(sel):
            out[sel] = corrupt(images[sel], name, severity, seed * 1000 + k)
    return out, which
