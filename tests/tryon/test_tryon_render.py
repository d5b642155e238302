"""Real EGL renders of the fitted garments over the synthetic mannequin: placement, occlusion, compositing."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.pose.types import LM
from edge.tryon.composite import composite_inplace
from edge.tryon.fitting import BodyFitter
from devtools.mannequin import render_person
from edge.tryon.occlusion import apply_occlusion
from edge.tryon.renderer import RenderOutput


def _full_alpha(out: RenderOutput) -> np.ndarray:
    a = np.zeros(out.frame_size, np.uint8)
    x, y, w, h = out.bbox
    a[y:y + h, x:x + w] = out.rgba[..., 3]
    return a


def _render(renderer, catalog, intr, sku, **person_kw):
    g = catalog.load(sku)
    renderer.set_garment(g)
    p = render_person(intr, **person_kw)
    pose = p.person_pose()
    fit = BodyFitter(intr, smoothing=None).fit(pose, 0.0, g.ref)
    return g, p, pose, fit, renderer.render(fit.poses)


def _torso_core(p, intr) -> np.ndarray:
    """Pixels well inside the torso: the shoulder-hip quad shrunk toward its centre."""
    uv = intr.project(p.cam)
    quad = uv[[LM["left_shoulder"], LM["right_shoulder"], LM["right_hip"], LM["left_hip"]]]
    c = quad.mean(0)
    inner = np.round(c + 0.75 * (quad - c)).astype(np.int32)
    m = np.zeros((intr.height, intr.width), np.uint8)
    cv2.fillConvexPoly(m, inner, 1)
    return m.astype(bool)


@pytest.mark.parametrize("sku,yaw", [("TEE-001", 0.0), ("TEE-001", 35.0), ("JKT-002", -25.0)])
def test_garment_covers_torso_and_stays_on_the_person(renderer, catalog, intr, sku, yaw):
    g, p, pose, fit, out = _render(renderer, catalog, intr, sku, yaw_deg=yaw)
    alpha = _full_alpha(out)
    core = _torso_core(p, intr)
    assert (alpha[core] > 0).mean() > 0.97, "garment must cover the torso"
    near_person = cv2.dilate((p.mask > 0.5).astype(np.uint8), np.ones((31, 31), np.uint8)).astype(bool)
    assert (alpha[~near_person] > 0).sum() == 0, "no garment pixels far outside the person"
    assert (alpha > 0).sum() > 0.8 * core.sum()


def test_head_garments_sit_on_the_head(renderer, catalog, intr):
    p = render_person(intr)
    uv = intr.project(p.cam)
    eyes = uv[[LM["left_eye"], LM["right_eye"]]]
    ears = uv[[LM["left_ear"], LM["right_ear"]]]
    _, _, _, _, glasses = _render(renderer, catalog, intr, "GLS-003")
    x, y, w, h = glasses.bbox
    for ex, ey in eyes:  # both eyes are inside the glasses' box
        assert x <= ex <= x + w and y <= ey <= y + h
    _, _, _, _, hat = _render(renderer, catalog, intr, "BNE-004")
    x, y, w, h = hat.bbox
    assert y + h < ears[:, 1].min() + 10 and y < ears[:, 1].min() - 30  # above the ears, on the crown
    assert x <= ears[:, 0].min() and x + w >= ears[:, 0].max()


def test_composite_puts_garment_colour_over_torso(renderer, catalog, intr):
    g, p, pose, fit, out = _render(renderer, catalog, intr, "TEE-001")
    renderer.set_colour(g.colour("red"))
    out = renderer.render(fit.poses)
    frame = composite_inplace(p.image.copy(), out)
    core = _torso_core(p, intr)
    b, gch, r = (frame[core].astype(int).T)
    assert np.median(r - b) > 60 and np.median(r - gch) > 60  # red shirt where the grey mannequin shirt was
    outside = ~cv2.dilate(_full_alpha(out), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.array_equal(frame[outside], p.image[outside])  # the camera frame is untouched elsewhere


def test_premultiplied_composite_math():
    frame = np.full((4, 4, 3), 200, np.uint8)
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (100, 50, 0, 128)  # premultiplied: colour already scaled by alpha
    out = RenderOutput(rgba, np.ones((2, 2), np.float32), (1, 1, 2, 2), (4, 4))
    composite_inplace(frame, out)
    # BGR: bg*(1-a) + premultiplied fg
    np.testing.assert_allclose(frame[1, 1].astype(int), [0 + 100, 50 + 100, 100 + 100], atol=1)
    assert (frame[1, 2] == 200).all() and (frame[0, 0] == 200).all()


def test_forearm_across_torso_hides_the_shirt(renderer, catalog, intr):
    g, p, pose, fit, out = _render(renderer, catalog, intr, "TEE-001", cross_right_forearm=True)
    uv = intr.project(p.cam)
    el, wr = uv[LM["right_elbow"]], uv[LM["left_shoulder"]] * 0 + uv[LM["right_wrist"]]
    pts = [np.round(el + t * (wr - el)).astype(int) for t in np.linspace(0.45, 0.9, 6)]  # forearm over the torso
    alpha = _full_alpha(out)
    assert all(alpha[y, x] > 0 for x, y in pts), "before occlusion the shirt is drawn over the forearm"
    cleared = apply_occlusion(out, fit, intr, g.covers, pose.mask)
    assert cleared > 500
    alpha = _full_alpha(out)
    assert all(alpha[y, x] == 0 for x, y in pts), "the forearm in front hides the shirt"
    frame = composite_inplace(p.image.copy(), out)
    for x, y in pts:
        np.testing.assert_array_equal(frame[y, x], p.image[y, x])  # skin of the mannequin shows
    assert (alpha[_torso_core(p, intr)] > 0).mean() > 0.7  # the rest of the shirt stays


def test_arms_at_the_sides_do_not_cut_the_shirt(renderer, catalog, intr):
    g, p, pose, fit, out = _render(renderer, catalog, intr, "TEE-001")
    before = (out.rgba[..., 3] > 0).sum()
    apply_occlusion(out, fit, intr, g.covers, pose.mask)
    assert (out.rgba[..., 3] > 0).sum() > 0.97 * before


def test_sleeved_jacket_is_not_cut_by_its_own_forearm(renderer, catalog, intr):
    g, p, pose, fit, out = _render(renderer, catalog, intr, "JKT-002", cross_right_forearm=True)
    uv = intr.project(p.cam)
    mid = np.round((uv[LM["right_elbow"]] + uv[LM["right_wrist"]]) / 2).astype(int)
    apply_occlusion(out, fit, intr, g.covers, pose.mask)
    assert _full_alpha(out)[mid[1], mid[0]] > 0  # the sleeve covers the forearm
    hand = np.round(uv[LM["right_index"]] * 0.5 + uv[LM["right_wrist"]] * 0.5).astype(int)
    assert _full_alpha(out)[hand[1], hand[0]] == 0  # the bare hand is in front of the jacket
