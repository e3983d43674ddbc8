"""Procedural scenes (display sRGB in [0, 1]) for measuring the natural look's metering: the
bright ones (KINDS: snow fields, skies with clouds, a white aircraft against the sky, a bright
beach) and two hard ones (HARD_KINDS: a backlit subject against a bright sky, a night street with
a few lights). Each is what a photographer's finished picture of such a scene looks like."""
from __future__ import annotations

import numpy as np

KINDS = ("snow", "sky", "aircraft", "beach")
HARD_KINDS = ("backlit", "night")


def _blobs(rng, h, w, n, radius):
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w))
    for _ in range(n):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(*radius)
        mask = np.maximum(mask, np.clip(1.5 - np.hypot(yy - cy, xx - cx) / r, 0, 1))
    return mask


def _texture(rng, h, w, scale):
    small = rng.normal(size=(h // 8 + 2, w // 8 + 2))
    big = np.kron(small, np.ones((8, 8)))[:h, :w]
    return big * scale


def scene(kind: str, seed: int, size: tuple[int, int] = (192, 256)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = size
    yy = np.linspace(0, 1, h)[:, None, None]
    if kind == "snow":
        img = np.array([0.93, 0.95, 0.98]) + _texture(rng, h, w, 0.03)[..., None]
        shadow = _blobs(rng, h, w, 4, (20, 60))[..., None]
        img = img * (1 - 0.25 * shadow) + shadow * np.array([-0.05, 0.0, 0.03])
        trees = _blobs(rng, h, w, rng.integers(2, 6), (4, 12))[..., None]
        img = img * (1 - trees) + trees * np.array([0.12, 0.16, 0.12])
    elif kind in ("sky", "aircraft"):
        img = (1 - yy) * np.array([0.40, 0.62, 0.92]) + yy * np.array([0.80, 0.88, 0.97])
        img = img + _texture(rng, h, w, 0.01)[..., None]
        clouds = _blobs(rng, h, w, rng.integers(3, 8), (15, 45))[..., None]
        img = img * (1 - clouds) + clouds * np.array([0.97, 0.97, 0.98])
        if kind == "aircraft":
            body = _blobs(rng, h, w, 1, (30, 40))[..., None]
            img = img * (1 - body) + body * np.array([0.96, 0.96, 0.95])
            dots = _blobs(rng, h, w, 6, (1.5, 3))[..., None]
            img = img * (1 - dots) + dots * 0.15
    elif kind == "backlit":
        img = (1 - yy) * np.array([0.75, 0.85, 0.97]) + yy * np.array([0.95, 0.95, 0.96])
        person = _blobs(rng, h, w, 2, (30, 55))[..., None]
        img = img * (1 - person) + person * (np.array([0.22, 0.18, 0.16]) + _texture(rng, h, w, 0.03)[..., None])
    elif kind == "night":
        img = np.array([0.05, 0.06, 0.09]) + _texture(rng, h, w, 0.015)[..., None] + yy * 0.08
        lights = _blobs(rng, h, w, rng.integers(3, 8), (2, 6))[..., None]
        img = img * (1 - lights) + lights * np.array([1.0, 0.92, 0.7])
    else:
        sea = np.array([0.35, 0.6, 0.75]) + _texture(rng, h, w, 0.04)[..., None]
        sand = np.array([0.92, 0.86, 0.72]) + _texture(rng, h, w, 0.03)[..., None]
        img = np.where(yy > 0.45, sand, sea)
    return np.clip(img, 0, 1)
