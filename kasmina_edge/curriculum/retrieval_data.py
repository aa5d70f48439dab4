"""Stage 4's data: small rendered shapes and their captions, two shifts, the stage's splits, and recall@k.

Every image is 16x16 RGB with one shape on it; its caption names the shape's four attributes in a fixed
order, "small red circle left", from 17 words (2 sizes x 6 colours x 5 shapes x 4 positions = 240
captions). Sizes, positions and colour intensities are jittered, so two renderings of one caption differ.
Shifts: ``synonyms`` (the stage's) keeps the images and names colours and shapes by 11 words that are in
the vocabulary but in no training caption ("large crimson disc top"); ``striped_background`` keeps the
captions and puts the shapes on grey stripes of random angle, period and phase (the base saw near-black).
Everything is numpy and deterministic from its seed.

A retrieval gallery holds each caption once (``distinct=True``), so the right answer to every query is one
item and R@k is the usual one; ties are counted against the query (a model that scores everything alike
gets chance, not 1.0).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from kasmina_edge.contracts.errors import KasminaError

SIZES = ("small", "large")
COLOURS = ("red", "green", "blue", "yellow", "magenta", "cyan")
SHAPES = ("circle", "square", "triangle", "cross", "ring")
POSITIONS = ("left", "right", "top", "bottom")
ATTRIBUTES = (SIZES, COLOURS, SHAPES, POSITIONS)
# The caption shift's words: in the vocabulary (the text encoder has a row for each) but never in a training
# caption, so the base knows them only as their untrained embeddings.
SYNONYMS: dict[int, tuple[str, ...]] = {
    1: ("crimson", "emerald", "azure", "golden", "violet", "teal"),
    2: ("disc", "box", "wedge", "plus", "hoop"),
}
VOCAB: tuple[str, ...] = tuple(w for words in (*ATTRIBUTES, *SYNONYMS.values()) for w in words)
WORD_ID = {w: i for i, w in enumerate(VOCAB)}
N_TRAINED_WORDS = sum(len(a) for a in ATTRIBUTES)  # ids below it are the training captions' words
CAPTION_LEN = len(ATTRIBUTES)
IMAGE_SIZE = 16
SHIFTS = ("synonyms", "striped_background")

_RGB = {
    "red": (1.0, 0.15, 0.1), "green": (0.1, 0.9, 0.15), "blue": (0.15, 0.3, 1.0),
    "yellow": (1.0, 0.9, 0.1), "magenta": (0.95, 0.1, 0.9), "cyan": (0.1, 0.9, 0.95),
}  # fmt: skip
_CENTRE = {"left": (4.5, 7.5), "right": (10.5, 7.5), "top": (7.5, 4.5), "bottom": (7.5, 10.5)}  # (x, y)
_RADIUS = {"small": (2.0, 2.6), "large": (3.3, 3.9)}
_SUPER = 4  # supersampling factor: shapes are drawn at 64x64 and averaged down (anti-aliased edges)

COMBOS: tuple[tuple[int, int, int, int], ...] = tuple(
    itertools.product(range(len(SIZES)), range(len(COLOURS)), range(len(SHAPES)), range(len(POSITIONS)))
)


@dataclass(frozen=True)
class Pairs:
    """Image-caption pairs: row i of ``images`` is described by row i of ``tokens``."""

    images: np.ndarray  # (n, 3, 16, 16) float32 in [0, 1]
    tokens: np.ndarray  # (n, 4) int64 word ids (VOCAB)
    combos: np.ndarray  # (n,) int64: index into COMBOS (equal ids = equal captions)

    def __len__(self) -> int:
        return len(self.combos)

    def captions(self) -> list[str]:
        return [" ".join(VOCAB[int(t)] for t in row) for row in self.tokens]

    def take(self, idx: np.ndarray) -> Pairs:
        return Pairs(self.images[idx], self.tokens[idx], self.combos[idx])


def caption(combo: tuple[int, int, int, int]) -> str:
    return " ".join(words[i] for words, i in zip(ATTRIBUTES, combo, strict=True))


def tokenize(text: str) -> np.ndarray:
    """Word ids of a caption; an unknown word or a wrong length is one clear error."""
    words = text.split()
    unknown = [w for w in words if w not in WORD_ID]
    if unknown or len(words) != CAPTION_LEN:
        raise KasminaError(
            f"caption {text!r}: needs {CAPTION_LEN} words from the vocabulary"
            + (f" (unknown: {', '.join(unknown)})" if unknown else "")
        )
    return np.array([WORD_ID[w] for w in words], dtype=np.int64)


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, r: float) -> np.ndarray:
    """Inside-the-shape test on offsets from the centre (pixels), radius ``r``."""
    d = np.hypot(dx, dy)
    if shape == "circle":
        return d <= r
    if shape == "square":
        return np.maximum(abs(dx), abs(dy)) <= 0.8 * r
    if shape == "triangle":  # apex up, base at the bottom
        return (dy <= 0.8 * r) & (abs(dx) <= (dy + r) * 0.6)
    if shape == "cross":
        return ((abs(dx) <= 0.33 * r) | (abs(dy) <= 0.33 * r)) & (np.maximum(abs(dx), abs(dy)) <= r)
    if shape == "ring":
        return (d <= r) & (d >= 0.55 * r)
    raise KasminaError(f"shape {shape!r}: not one of {', '.join(SHAPES)}")


def _grid() -> tuple[np.ndarray, np.ndarray]:
    """Sub-pixel sample centres of the 16x16 image, in pixel units."""
    s = (np.arange(IMAGE_SIZE * _SUPER) + 0.5) / _SUPER
    return np.meshgrid(s, s)  # x, y


def _downsample(a: np.ndarray) -> np.ndarray:
    return a.reshape(IMAGE_SIZE, _SUPER, IMAGE_SIZE, _SUPER).mean(axis=(1, 3))


def _background(rng: np.random.Generator, shift: str | None) -> np.ndarray:  # shift: None or striped_background
    """(3, 16, 16): near-black with faint noise, or the shift's grey stripes."""
    if shift is None:
        return np.clip(rng.normal(0.03, 0.02, (3, IMAGE_SIZE, IMAGE_SIZE)), 0.0, 1.0)
    y, x = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE].astype(np.float64)
    theta, period, phase = rng.uniform(0, np.pi), rng.uniform(3.0, 6.0), rng.uniform(0, 2 * np.pi)
    stripes = 0.35 + 0.2 * np.sin(2 * np.pi * (x * np.cos(theta) + y * np.sin(theta)) / period + phase)
    return np.clip(stripes[None] + rng.normal(0.0, 0.05, (3, IMAGE_SIZE, IMAGE_SIZE)), 0.0, 1.0)


def render(combo: tuple[int, int, int, int], rng: np.random.Generator, shift: str | None = None) -> np.ndarray:
    """One (3, 16, 16) image of ``combo`` with jittered size, position and intensity."""
    size, colour, shape, position = (words[i] for words, i in zip(ATTRIBUTES, combo, strict=True))
    gx, gy = _grid()
    cx, cy = _CENTRE[position]
    cx, cy = cx + rng.uniform(-1.0, 1.0), cy + rng.uniform(-1.0, 1.0)
    r = rng.uniform(*_RADIUS[size])
    cover = _downsample(_shape_mask(shape, gx - cx, gy - cy, r).astype(np.float64))  # (16, 16) in [0, 1]
    rgb = np.asarray(_RGB[colour]) * rng.uniform(0.8, 1.0)
    img = _background(rng, shift) * (1.0 - cover) + rgb[:, None, None] * cover
    return img.astype(np.float32)


def caption_tokens(combo: tuple[int, int, int, int], *, synonyms: bool = False) -> np.ndarray:
    """Word ids of ``combo``'s caption; ``synonyms``: the attributes in SYNONYMS use their unseen words."""
    words = [
        SYNONYMS[a][i] if synonyms and a in SYNONYMS else ATTRIBUTES[a][i] for a, i in enumerate(combo)
    ]
    return np.array([WORD_ID[w] for w in words], dtype=np.int64)


def known_words(tokens: np.ndarray) -> np.ndarray:
    """(n,) bool: whether each caption is all in the words the base was trained on (no synonym)."""
    return np.asarray(np.asarray(tokens < N_TRAINED_WORDS).all(axis=1), dtype=bool)


def make_pairs(n: int, *, seed: int, shift: str | None = None, distinct: bool = False) -> Pairs:
    """``n`` rendered pairs; ``distinct``: every caption at most once (a retrieval gallery).

    ``shift``: None (what the base learns), ``"synonyms"`` (the same images; colours and shapes named by words
    no training caption holds) or ``"striped_background"`` (the same captions; shapes on grey stripes).
    """
    if shift is not None and shift not in SHIFTS:
        raise KasminaError(f"shift {shift!r}: not one of {', '.join(SHIFTS)}")
    if n < 1 or (distinct and n > len(COMBOS)):
        limit = f"1..{len(COMBOS)}" if distinct else ">= 1"
        raise KasminaError(f"make_pairs: n={n} outside {limit}{' for a distinct gallery' if distinct else ''}")
    rng = np.random.default_rng(seed)
    combos = rng.permutation(len(COMBOS))[:n] if distinct else rng.integers(0, len(COMBOS), n)
    background = shift if shift == "striped_background" else None
    images = np.stack([render(COMBOS[int(c)], rng, background) for c in combos])
    tokens = np.stack([caption_tokens(COMBOS[int(c)], synonyms=shift == "synonyms") for c in combos])
    return Pairs(images, tokens, combos.astype(np.int64))


@dataclass(frozen=True)
class StageData:
    """Stage 4's splits, each from its own seed (the test galleries are renderings no other split shares)."""

    train: Pairs  # clean: what the base learns
    clean_val: Pairs  # clean gallery: the base's epoch choice, G4's global reference
    shift_val: Pairs  # shifted gallery: the gates' metric, fine-tuning's epoch choice
    adapt: Pairs  # shifted pairs, then clean replay: what a seed and fine-tuning learn from
    shift_tests: list[Pairs]
    clean_tests: list[Pairs]


def concat(a: Pairs, b: Pairs) -> Pairs:
    return Pairs(*(np.concatenate([x, y]) for x, y in ((a.images, b.images), (a.tokens, b.tokens), (a.combos, b.combos))))


def stage_splits(
    *, n_train: int, n_adapt: int, n_replay: int, gallery: int, test_galleries: int, seed: int, shift: str = "synonyms"
) -> StageData:
    k, g = 1000 * seed, gallery
    return StageData(
        train=make_pairs(n_train, seed=k + 1),
        clean_val=make_pairs(g, seed=k + 2, distinct=True),
        shift_val=make_pairs(g, seed=k + 3, distinct=True, shift=shift),
        adapt=concat(make_pairs(n_adapt, seed=k + 4, shift=shift), make_pairs(n_replay, seed=k + 5)),
        shift_tests=[make_pairs(g, seed=k + 100 + i, distinct=True, shift=shift) for i in range(test_galleries)],
        clean_tests=[make_pairs(g, seed=k + 200 + i, distinct=True) for i in range(test_galleries)],
    )


def recall_at_k(scores: np.ndarray, k: int) -> float:
    """R@k of a square score matrix whose right answers are on the diagonal (row = query, column = gallery).

    A query's rank counts every other item scored at least as high as its own (ties count against it).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1] or not len(s):
        raise KasminaError(f"recall_at_k: scores must be a non-empty square matrix, got shape {s.shape}")
    own = np.diag(s)[:, None]
    rank = (s >= own).sum(axis=1) - 1  # items ranked ahead of (or tied with) the right one
    return float((rank < k).mean())


def retrieval_scores(scores: np.ndarray, ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """R@k both ways from an (images x captions) score matrix: ``i2t_r1``, ``t2i_r1``, ... and ``r1`` (their mean)."""
    out: dict[str, float] = {}
    for k in ks:
        out[f"i2t_r{k}"] = recall_at_k(scores, k)
        out[f"t2i_r{k}"] = recall_at_k(np.asarray(scores).T, k)
        out[f"r{k}"] = (out[f"i2t_r{k}"] + out[f"t2i_r{k}"]) / 2
    return out
