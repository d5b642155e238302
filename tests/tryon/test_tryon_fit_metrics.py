"""The fit-quality metrics (devtools.tryon_quality) and the layer clean-up (trim, fragments, deform) on hand-made
masks whose answers are known, so a regression in a metric or a clean-up step is caught."""
from __future__ import annotations

import numpy as np

from devtools import tryon_quality as Q
from edge.pose.types import LM
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.occlusion import drop_fragments, trim_to_person
from edge.tryon.renderer import RenderOutput
from edge.tryon.silhouette import LEVELS, deform


def _alpha(h=100, w=100):
    return np.zeros((h, w), np.uint8)


def test_precision_counts_garment_on_and_off_the_person():
    a, person = _alpha(), np.zeros((100, 100), np.float32)
    a[20:60, 20:60] = 255  # 1600 garment px
    person[:, :40] = 1.0  # the left half of the garment is on the person
    assert Q.precision_counts(a, person) == (800, 1600)
    a[20:60, 60:70] = 100  # below half coverage: not garment
    assert Q.precision_counts(a, person) == (800, 1600)
    assert Q.ratio(0, 0) is None and Q.ratio(1, 4) == 0.25


def test_coverage_counts():
    a, region = _alpha(), np.zeros((100, 100), bool)
    region[10:30, 10:30] = True  # 400 px
    a[10:20, 10:30] = 200  # covers half
    assert Q.coverage_counts(a, region) == (200, 400)


def test_components_and_the_body_bridge():
    v = np.zeros((50, 50), bool)
    v[5:15, 5:45] = True
    v[25:35, 5:45] = True  # two bands (a shirt above and below an arm)
    assert Q.components(v) == 2
    arm = np.zeros_like(v)
    arm[15:25, 5:45] = True  # the arm between them
    assert Q.components(v, arm) == 1
    far = np.zeros_like(v)
    far[40:45, 40:45] = True  # a bridge that touches neither band joins nothing
    assert Q.components(v, far) == 2
    assert Q.components(np.zeros_like(v)) == 0


def test_piece_fragments_count_floating_islands_but_not_occluder_splits():
    ids = np.zeros((60, 60), np.uint8)
    ids[5:55, 10:50] = 1  # torso piece
    ids[5:30, 50:58] = 2  # a sleeve beside it
    alpha = np.where(ids > 0, 255, 0).astype(np.uint8)
    cut = np.zeros((60, 60), bool)
    cut[25:30, 10:50] = True  # a forearm across the torso, full width
    alpha[cut] = 0
    groups = {"torso": [1], "left_upper_arm": [2]}
    frag = Q.piece_fragments(alpha, cut, ids, groups)
    assert frag["torso"] == (1, 2)  # one shirt seen above and below the arm; two raw components
    assert frag["left_upper_arm"] == (1, 1)
    alpha[40:45, 10:50] = 0  # a tear that no body part explains
    assert Q.piece_fragments(alpha, cut, ids, groups)["torso"] == (2, 3)
    island = np.zeros((60, 60), bool)
    ids2, alpha2 = ids.copy(), alpha.copy()
    ids2[56:59, 2:5], alpha2[56:59, 2:5] = 2, 255  # a detached speck of sleeve
    island[56:59, 2:5] = True
    assert Q.piece_fragments(alpha2, cut, ids2, groups)["left_upper_arm"] == (2, 2)


def _landmarks():
    lm = np.zeros((33, 5))
    lm[:, 3] = 1.0
    for n, (x, y) in {"left_shoulder": (70, 20), "right_shoulder": (30, 20), "left_hip": (65, 80),
                      "right_hip": (35, 80), "left_elbow": (85, 50), "left_wrist": (88, 78), "left_index": (88, 85),
                      "right_elbow": (15, 50), "right_wrist": (12, 78), "right_index": (12, 85)}.items():
        lm[LM[n], :2] = (x, y)
    return lm


def test_torso_region_is_the_torso_band_without_arms():
    lm = _landmarks()
    person = np.zeros((100, 100), np.float32)
    person[10:95, 5:95] = 1.0
    r = Q.torso_region(lm, person)
    assert r[50, 50] and r[70, 40]  # chest and belly
    assert not r[25, 50]  # above 0.15 of the shoulder-hip distance: the neckline
    assert not r[85, 50]  # below the hem line (0.95)
    assert not r[50, 85] and not r[50, 15]  # the arms at the sides
    lm[LM["left_elbow"], 3] = 0.1  # an arm the model does not see is not cut out
    assert Q.torso_region(lm, person)[45, 80]
    person[:, 50:] = 0
    assert not Q.torso_region(lm, person)[50, 60]  # never off the person


def test_anchor_points_and_jitter():
    intr = Intrinsics.from_hfov(640, 480, 60.0)
    pose = np.eye(4)
    pose[:3, 3] = (0.0, 0.0, -2.0)  # 2 m in front of the camera (OpenGL: -z)
    pts, seen = Q.anchor_points({"torso": pose}, intr, {"torso"}, {"left_shoulder": 0.9, "right_shoulder": 0.9})
    assert pts.shape == (6, 2) and seen.all()
    np.testing.assert_allclose(pts[0], (320, 240), atol=1e-6)  # the origin on the optical axis
    np.testing.assert_allclose(pts[1, 0] - 320, 0.18 * intr.fx / 2.0, atol=1e-6)
    _, seen = Q.anchor_points({"torso": pose}, intr, {"torso"}, {"left_shoulder": 0.2, "right_shoulder": 0.9})
    assert not seen.any()  # a guessed shoulder: not counted
    a = np.zeros((3, 2))
    b = a + [[3, 4], [0, 1], [0, 0]]
    d = Q.jitter_px([(a, np.ones(3, bool)), (b, np.array([True, False, True]))])
    np.testing.assert_allclose(d, [5.0, 0.0])
    np.testing.assert_allclose(np.sort(Q.jitter_px([(a, np.ones(3, bool)), (b, np.zeros(3, bool))],
                                                   seen_only=False)), [0.0, 1.0, 5.0])


def _layer(alpha: np.ndarray) -> RenderOutput:
    rgba = np.zeros(alpha.shape + (4,), np.uint8)
    rgba[..., 0] = alpha // 2
    rgba[..., 3] = alpha
    return RenderOutput(rgba, (alpha > 0).astype(np.float32), (0, 0, alpha.shape[1], alpha.shape[0]), alpha.shape)


def test_trim_fades_the_garment_out_off_the_person():
    a = _alpha()
    a[10:90, 10:90] = 255
    out = _layer(a)
    person = np.zeros((100, 100), np.float32)
    person[:, :50] = 1.0
    person[:, 50:53] = 0.5  # soft mask edge
    removed = trim_to_person(out, person, dilate_px=0)
    assert removed > 0
    al = out.rgba[..., 3]
    assert (al[10:90, 10:49] == 255).all()  # on the person: untouched
    assert (al[:, 53:] == 0).all() and (out.depth[:, 53:] == 0).all()  # off the person: gone
    assert 0 < al[50, 51] < 255  # the soft edge
    assert out.rgba[50, 51, 0] <= al[50, 51] // 2 + 1  # colour scaled with alpha (premultiplied)
    out2 = _layer(a)
    trim_to_person(out2, person, dilate_px=3)
    assert out2.rgba[50, 54, 3] > 0  # slack past the mask edge


def test_drop_fragments_keeps_big_parts_and_drops_specks():
    a = _alpha()
    a[5:45, 5:95] = 255  # 3600 px
    a[55:95, 5:95] = 255  # the part below an arm: kept
    a[50:52, 50:52] = 255  # a 4 px speck: dropped
    out = _layer(a)
    assert drop_fragments(out, 0.02) == 4
    assert out.rgba[50, 50, 3] == 0 and out.rgba[60, 50, 3] == 255 and out.rgba[10, 50, 3] == 255
    assert drop_fragments(out, 0.02) == 0


def test_deform_scales_the_torso_sides_and_keeps_unit_normals():
    pos = np.array([[0.2, -0.3, 0.0], [-0.2, -0.3, 0.0], [0.2, 0.05, 0.0], [0.0, -0.3, 0.1], [0.2, -0.3, 0.0]],
                   np.float32)
    nrm = np.array([[1, 0, 0], [-1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], np.float32)
    scale = np.column_stack([LEVELS, np.full(len(LEVELS), 0.8), np.full(len(LEVELS), 1.2)])
    p, n = deform(pos, nrm, scale)
    np.testing.assert_allclose(p[0], [0.24, -0.3, 0.0], atol=1e-6)  # wearer's left widened
    np.testing.assert_allclose(p[1], [-0.16, -0.3, 0.0], atol=1e-6)  # wearer's right narrowed
    np.testing.assert_allclose(p[2], pos[2], atol=1e-6)  # above the shoulder line: as modelled
    np.testing.assert_allclose(p[3], pos[3], atol=1e-6)  # the centre line stays
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0, atol=1e-6)
    ident = np.column_stack([LEVELS, np.ones(len(LEVELS)), np.ones(len(LEVELS))])
    p1, n1 = deform(pos, nrm, ident)
    np.testing.assert_allclose(p1, pos, atol=1e-6)
    np.testing.assert_allclose(n1, nrm, atol=1e-6)
    taper = np.column_stack([LEVELS, np.linspace(1.0, 1.3, len(LEVELS)), np.linspace(1.0, 1.3, len(LEVELS))])
    _, nt = deform(pos[:1], nrm[:1], taper)  # flaring toward the hem: the side faces outward and up (a roof)
    assert nt[0, 0] > 0.9 and nt[0, 1] > 0.05
