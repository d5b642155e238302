"""Person crops for distillation, made on the training device (GPU or CPU) from the package photos.

Every batch depends only on (seed, step): interruption and resume reproduce the same data stream. Inputs are
what the runtime feeds the landmark model (a rotated 256x256 ROI crop, RGB in [0, 1]) with heavy augmentation:
ROI jitter (shift, scale, rotation, flip), colour (exposure when enabled, brightness, contrast, gamma, saturation,
tint, greyscale), blur, sensor noise, low resolution, occluders (patches of other photos or flat colour) and
background swaps (the teacher's segmentation mask pastes the person onto another scene). Labels are not needed: the targets are
the teacher's outputs on the very same crop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F

CROP = 256


@dataclass(frozen=True)
class Person:
    photo: str
    cx: float
    cy: float
    size: float
    rotation: float


@dataclass(frozen=True)
class Recipe:
    shift: float = 0.06          # ROI centre jitter, std, fraction of ROI size
    scale_std: float = 0.12      # log-scale jitter
    scale_down: float = 0.25     # ... clipped to [-scale_down, +scale_up] (log): crops of a body 0.78-1.35x its size
    scale_up: float = 0.3
    rot_std: float = 0.25        # radians
    p_flip: float = 0.5
    p_empty: float = 0.05        # crops of person-free scenes (pose flag must stay low)
    p_blur: float = 0.3
    p_noise: float = 0.3
    p_lowres: float = 0.2
    p_occluder: float = 0.3
    p_background: float = 0.25
    p_grey: float = 0.15
    p_exposure: float = 0.0      # exposure gain x0.3-1.5 (a dim shop corner, a bright window) before sensor noise

    def as_dict(self) -> dict:
        """The recorded recipe. Fields added after the first runs are left out at their default, so those runs'
        checkpoints still match their recipe and resume."""
        defaults = Recipe.keys()
        return {k: v for k, v in self.__dict__.items() if not (k in LATER_FIELDS and v == defaults[k])}

    @staticmethod
    def keys() -> dict[str, float]:
        """Every field and its default (what --recipe accepts)."""
        return {f.name: f.default for f in fields(Recipe)}


LATER_FIELDS = ("p_exposure",)  # added 2026-12-01, off by default


class CropMaker:
    """Holds the photos on the device and makes augmented batches (N, 256, 256, 3) float in [0, 1]."""

    def __init__(self, photos: dict[str, np.ndarray], people: list[Person], scenes: list[str],
                 device: str, recipe: Recipe = Recipe()):
        if not people:
            raise ValueError("no training people")
        self.device = torch.device(device)
        self.recipe = recipe
        self.people = people
        self.scenes = scenes
        self.photos = {k: torch.from_numpy(np.ascontiguousarray(v)).to(self.device).permute(2, 0, 1)[None].float()
                       .div_(255.0) for k, v in photos.items()}  # (1, 3, H, W) RGB

    # -- geometry ----------------------------------------------------------------------------------------------
    def _crop(self, img: torch.Tensor, cx: float, cy: float, size: float, rot: float, flip: bool,
              out: int = CROP) -> torch.Tensor:
        """Rotated square crop (edge.pose.roi.crop geometry, BORDER_REPLICATE) → (1, 3, out, out)."""
        _, _, h, w = img.shape
        c, s, k = math.cos(rot), math.sin(rot), size / out
        u = torch.arange(out, device=self.device, dtype=torch.float32) - out / 2
        if flip:
            u = -u
        vv, uu = torch.meshgrid(torch.arange(out, device=self.device, dtype=torch.float32) - out / 2, u,
                                indexing="ij")
        x = cx + c * k * uu - s * k * vv
        y = cy + s * k * uu + c * k * vv
        grid = torch.stack([2 * x / (w - 1) - 1, 2 * y / (h - 1) - 1], -1)[None]
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=True)

    # -- a batch -----------------------------------------------------------------------------------------------
    def batch(self, n: int, seed: int, step: int, teacher_seg=None) -> torch.Tensor:
        """n augmented crops (N, H, W, 3). `teacher_seg(x NHWC) -> logits NHWC1` enables background swaps."""
        rng = np.random.default_rng([seed, step])
        r = self.recipe
        crops, people_mask = [], []
        for _ in range(n):
            if rng.random() < r.p_empty:
                sc = self.photos[self.scenes[int(rng.integers(len(self.scenes)))]]
                _, _, h, w = sc.shape
                size = float(rng.uniform(0.3, 1.0) * min(h, w))
                crops.append(self._crop(sc, float(rng.uniform(size / 2, w - size / 2)),
                                        float(rng.uniform(size / 2, h - size / 2)), size,
                                        float(rng.normal(0, 0.3)), bool(rng.random() < 0.5)))
                people_mask.append(False)
                continue
            p = self.people[int(rng.integers(len(self.people)))]
            size = p.size * float(np.exp(np.clip(rng.normal(0, r.scale_std), -r.scale_down, r.scale_up)))
            cx = p.cx + float(rng.normal(0, r.shift)) * p.size
            cy = p.cy + float(rng.normal(0, r.shift)) * p.size
            rot = p.rotation + float(np.clip(rng.normal(0, r.rot_std), -0.7, 0.7))
            crops.append(self._crop(self.photos[p.photo], cx, cy, size, rot, bool(rng.random() < r.p_flip)))
            people_mask.append(True)
        x = torch.cat(crops)  # (N, 3, H, W)
        if teacher_seg is not None:
            x = self._backgrounds(x, rng, people_mask, teacher_seg)
        x = self._occluders(x, rng)
        x = self._photometric(x, rng)
        return x.clamp_(0, 1).permute(0, 2, 3, 1).contiguous()

    def _backgrounds(self, x, rng, people_mask, teacher_seg):
        idx = [i for i, m in enumerate(people_mask) if m and rng.random() < self.recipe.p_background]
        if not idx:
            return x
        with torch.no_grad():  # the whole batch: one input shape (cuDNN builds kernels per shape on CUDA)
            seg = teacher_seg(x.permute(0, 2, 3, 1).contiguous())  # (N, H, W, 1) logits
        alpha = torch.sigmoid(seg.permute(0, 3, 1, 2).float() / 4.0)
        for i in idx:
            j = i
            sc = self.photos[self.scenes[int(rng.integers(len(self.scenes)))]]
            _, _, h, w = sc.shape
            size = float(rng.uniform(0.3, 1.0) * min(h, w))
            bg = self._crop(sc, float(rng.uniform(size / 2, w - size / 2)), float(rng.uniform(size / 2, h - size / 2)),
                            size, float(rng.normal(0, 0.2)), bool(rng.random() < 0.5))
            x[i] = alpha[j] * x[i] + (1 - alpha[j]) * bg[0]
        return x

    def _occluders(self, x, rng):
        n, _, h, w = x.shape
        names = list(self.photos)
        for i in range(n):
            if rng.random() >= self.recipe.p_occluder:
                continue
            for _ in range(int(rng.integers(1, 3))):
                ow, oh = int(rng.uniform(0.1, 0.45) * w), int(rng.uniform(0.1, 0.45) * h)
                x0, y0 = int(rng.integers(0, w - ow)), int(rng.integers(0, h - oh))
                if rng.random() < 0.5:
                    x[i, :, y0:y0 + oh, x0:x0 + ow] = torch.tensor(rng.uniform(0, 1, 3), device=self.device,
                                                                   dtype=x.dtype)[:, None, None]
                else:
                    src = self.photos[names[int(rng.integers(len(names)))]]
                    _, _, sh, sw = src.shape
                    px, py = int(rng.integers(0, max(1, sw - ow))), int(rng.integers(0, max(1, sh - oh)))
                    patch = src[0, :, py:py + oh, px:px + ow]
                    x[i, :, y0:y0 + patch.shape[1], x0:x0 + patch.shape[2]] = patch
        return x

    def _photometric(self, x, rng):
        n = x.shape[0]
        r = self.recipe
        dev = self.device

        def t(v):
            return torch.tensor(np.asarray(v, np.float32), device=dev)

        if r.p_exposure:  # no draws when off: the crops of earlier recipes stay bit-identical
            on = rng.random(n) < r.p_exposure
            gain = np.where(on, np.exp(rng.uniform(math.log(0.3), math.log(1.5), n)), 1.0)
            x = (x * t(gain)[:, None, None, None]).clamp(0, 1)
        grey = x.mean(1, keepdim=True)
        sat = t(np.where(rng.random(n) < r.p_grey, 0.0, rng.uniform(0.4, 1.5, n)))[:, None, None, None]
        x = grey + (x - grey) * sat
        mean = x.mean((1, 2, 3), keepdim=True)
        x = (x - mean) * t(rng.uniform(0.6, 1.4, n))[:, None, None, None] + mean
        x = x + t(rng.uniform(-0.2, 0.2, n))[:, None, None, None]
        x = x * (1 + t(rng.uniform(-0.08, 0.08, (n, 3)))[:, :, None, None])
        x = x.clamp(0, 1) ** t(np.exp(rng.uniform(np.log(0.7), np.log(1.5), n)))[:, None, None, None]
        for i in range(n):
            if rng.random() < r.p_lowres:
                s = int(rng.choice((64, 96, 128, 160)))  # few shapes: kernels are built per shape
                small = F.interpolate(x[i:i + 1], size=(s, s), mode="bilinear", align_corners=False, antialias=True)
                x[i:i + 1] = F.interpolate(small, size=x.shape[2:], mode="bilinear", align_corners=False)
            if rng.random() < r.p_blur:
                x[i:i + 1] = _gauss_blur(x[i:i + 1], float(rng.uniform(0.5, 2.0)))
        noise = t(np.where(rng.random(n) < r.p_noise, rng.uniform(0.005, 0.04, n), 0.0))[:, None, None, None]
        gen = torch.Generator(device=dev).manual_seed(int(rng.integers(2**31)))
        return x + noise * torch.randn(x.shape, generator=gen, device=dev)


def _gauss_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    k = 13  # one kernel shape for every sigma <= 2.4
    a = torch.arange(k, device=x.device, dtype=x.dtype) - k // 2
    g = torch.exp(-(a ** 2) / (2 * sigma ** 2))
    g = g / g.sum()
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (k // 2, k // 2, 0, 0), mode="replicate"), g.view(1, 1, 1, k).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, k // 2, k // 2), mode="replicate"), g.view(1, 1, k, 1).repeat(c, 1, 1, 1), groups=c)
