"""A small landmark model with the full model's outputs, for slow devices (shelf cameras, ARM boards).

MobileNetV2-style encoder (inverted residuals, ReLU6) to 8x8, a light FPN decoder to 64x64 for the heatmaps and
the segmentation (upsampled x4), and a bottlenecked regression head for landmarks, world landmarks and the pose
flag. Same input (1, 256, 256, 3 NHWC in [0, 1]) and the same five outputs as pose_landmark_full, so the pipeline
runs it unchanged. No BatchNorm: trained from the teacher with small batches of very similar crops.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups)]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int = 4):
        super().__init__()
        mid = cin * expand
        self.body = nn.Sequential(_cbr(cin, mid, 1), _cbr(mid, mid, 3, stride, groups=mid), _cbr(mid, cout, 1, act=False))
        self.skip = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.skip else y


class StudentLandmark(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = _cbr(3, 16, 3, 2)                                                      # 128
        self.e1 = nn.Sequential(InvertedResidual(16, 24, 2), InvertedResidual(24, 24, 1))  # 64
        self.e2 = nn.Sequential(InvertedResidual(24, 40, 2), InvertedResidual(40, 40, 1))  # 32
        self.e3 = nn.Sequential(InvertedResidual(40, 64, 2), InvertedResidual(64, 64, 1))  # 16
        self.e4 = nn.Sequential(InvertedResidual(64, 112, 2), InvertedResidual(112, 112, 1))  # 8
        self.l4, self.l3, self.l2, self.l1 = (_cbr(112, 48, 1), _cbr(64, 48, 1), _cbr(40, 48, 1), _cbr(24, 48, 1))
        self.smooth = nn.Sequential(_cbr(48, 48, 3, groups=48), _cbr(48, 48, 1))
        self.heat = nn.Conv2d(48, 39, 1)
        self.seg = nn.Sequential(_cbr(48, 16, 3), nn.Conv2d(16, 1, 1))
        self.down = nn.Sequential(_cbr(112, 112, 3, 2, groups=112), _cbr(112, 96, 1))      # 4x4
        self.fc = nn.Sequential(nn.Flatten(), nn.Linear(96 * 16, 256), nn.ReLU6(inplace=True))
        self.out_lm = nn.Linear(256, 195)
        self.out_world = nn.Linear(256, 117)
        self.out_flag = nn.Linear(256, 1)

    def forward(self, x):
        x = x.permute(0, 3, 1, 2)
        f1 = self.e1(self.stem(x))
        f2 = self.e2(f1)
        f3 = self.e3(f2)
        f4 = self.e4(f3)
        p = self.l4(f4)
        p = F.interpolate(p, scale_factor=2.0, mode="bilinear", align_corners=False) + self.l3(f3)
        p = F.interpolate(p, scale_factor=2.0, mode="bilinear", align_corners=False) + self.l2(f2)
        p = F.interpolate(p, scale_factor=2.0, mode="bilinear", align_corners=False) + self.l1(f1)
        p = self.smooth(p)
        heat = self.heat(p).permute(0, 2, 3, 1)
        seg = F.interpolate(self.seg(p), scale_factor=4.0, mode="bilinear", align_corners=False).permute(0, 2, 3, 1)
        h = self.fc(self.down(f4))
        lm = self.out_lm(h) * 256.0
        return lm, torch.sigmoid(self.out_flag(h)), seg * 20.0, heat, self.out_world(h)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def weights_from_onnx(path) -> dict[str, torch.Tensor]:
    """StudentLandmark weights read back from an exported student ONNX file (its initializers keep the parameter
    names), e.g. the committed one: a warm start when the run's final.pt is gone. Raises ValueError when the file
    is not this architecture."""
    import onnx
    from onnx import numpy_helper

    want = StudentLandmark().state_dict()
    got = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer}
    missing = sorted(set(want) - set(got))
    shapes = [k for k in want if k in got and tuple(want[k].shape) != got[k].shape]
    if missing or shapes:
        raise ValueError(f"{path} is not a StudentLandmark export (missing {missing[:3]}, other shapes "
                         f"{shapes[:3]}): give a student ONNX made by this version or a run's final.pt")
    return {k: torch.from_numpy(got[k].copy()) for k in want}
