"""Fitting math: known landmarks -> expected camera-space transforms; smoothing; sizing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge.pose.types import LM
from edge.tryon.fitting import CV_TO_GL, BodyFitter, build_fit, solve_translation
from edge.tryon.anchors import DEFAULT_REF
from devtools.mannequin import render_person
from edge.tryon.smoothing import OneEuroFilter
from edge.tryon.sizing import ShoulderWidthEstimator, suggest_size


def test_translation_is_recovered_from_projections(intr):
    rng = np.random.default_rng(1)
    world = rng.uniform(-0.3, 0.3, (9, 3))
    t_true = np.array([0.12, 0.25, 2.1])
    uv = intr.project(world + t_true)
    t = solve_translation(world, uv, intr, np.ones(9))
    np.testing.assert_allclose(t, t_true, atol=1e-9)


@pytest.mark.parametrize("yaw", [0.0, 30.0, -40.0])
def test_torso_pose_from_known_landmarks(intr, yaw):
    p = render_person(intr, yaw_deg=yaw, distance=2.0, hip_drop=0.3)
    fit = BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0)
    ls, rs = p.cam[LM["left_shoulder"]], p.cam[LM["right_shoulder"]]
    M = fit.poses["torso"]
    # origin at the mid-shoulder point (OpenGL camera space)
    np.testing.assert_allclose(M[:3, 3], CV_TO_GL @ ((ls + rs) / 2), atol=1e-6)
    # scale = measured / reference body (the mannequin has 0.36 m shoulders, 0.50 m torso)
    sx, sy, sz = np.linalg.norm(M[:3, :3], axis=0)
    assert sx == pytest.approx(0.36 / DEFAULT_REF["shoulder_width"], rel=1e-6)
    assert sy == pytest.approx(0.50 / DEFAULT_REF["torso_length"], rel=1e-6)
    # yaw: the wearer's left axis rotates about the vertical axis
    assert fit.yaw_deg == pytest.approx(yaw, abs=1e-6)
    x_axis = M[:3, 0] / sx
    np.testing.assert_allclose(x_axis, [math.cos(math.radians(yaw)), 0, -math.sin(math.radians(yaw))], atol=1e-9)
    np.testing.assert_allclose(M[:3, 1] / sy, [0, 1, 0], atol=1e-9)  # upright: +y up


def test_scale_follows_a_bigger_body(intr):
    p = render_person(intr)
    pose = p.person_pose()
    hip = pose.world[[LM["left_hip"], LM["right_hip"]]].mean(0)
    pose.world = (pose.world - hip) * 1.1 + hip  # 10% larger person at the same image position
    fit = BodyFitter(intr, smoothing=None).fit(pose, 0.0)
    assert fit.shoulder_width_m == pytest.approx(0.396, rel=1e-6)
    assert np.linalg.norm(fit.poses["torso"][:3, 0]) == pytest.approx(1.1 * 0.36 / 0.36, rel=1e-6)


def test_sleeves_follow_the_arms(intr):
    p = render_person(intr, cross_right_forearm=True)
    fit = BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0)
    for side in ("left", "right"):
        for seg, a, b, ref in (("upper_arm", "shoulder", "elbow", "upper_arm"), ("forearm", "elbow", "wrist", "forearm")):
            M = fit.poses[f"{side}_{seg}"]
            A, B = CV_TO_GL @ p.cam[LM[f"{side}_{a}"]], CV_TO_GL @ p.cam[LM[f"{side}_{b}"]]
            np.testing.assert_allclose(M[:3, 3], A, atol=1e-6)
            # the segment's local -y axis, scaled, reaches the distal joint at the reference length
            tip = M @ np.array([0, -DEFAULT_REF[ref], 0, 1.0])
            np.testing.assert_allclose(tip[:3], B, atol=1e-6)


def test_head_anchor_faces_forward(intr):
    p = render_person(intr, yaw_deg=25)
    # the mannequin's eyes are level with its ears: with that reference the head frame is exactly upright
    fit = BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0, ref={"eye_height": 0.0})
    H = fit.poses["head"]
    z = H[:3, 2] / np.linalg.norm(H[:3, 2])
    a = math.radians(25)
    np.testing.assert_allclose(z, [math.sin(a), 0, math.cos(a)], atol=1e-6)
    np.testing.assert_allclose(H[:3, 3], CV_TO_GL @ p.cam[[LM["left_ear"], LM["right_ear"]]].mean(0), atol=1e-6)
    assert np.linalg.norm(H[:3, 0]) == pytest.approx(0.15 / DEFAULT_REF["ear_width"], rel=1e-6)


_HEAD_LMS = [LM[n] for n in ("nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
                             "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right")]


def _real_head_pose(intr, yaw=0.0, roll=0.0, eye_lift=0.018, spoil_world=True):
    """Mannequin pose with a real-looking head: eyes above the ears, the head rolled about the view axis; the
    world head (as BlazePose's) squeezed and shifted, its 2D landmarks exact."""
    p = render_person(intr, yaw_deg=yaw)
    cam = p.cam.copy()
    ears = cam[[LM["left_ear"], LM["right_ear"]]].mean(0)
    for n in ("left_eye", "right_eye", "left_eye_inner", "right_eye_inner", "left_eye_outer", "right_eye_outer"):
        cam[LM[n], 1] -= eye_lift  # OpenCV: -y is up
    c, s_ = math.cos(math.radians(roll)), math.sin(math.radians(roll))
    R = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1.0]])
    cam[_HEAD_LMS] = (cam[_HEAD_LMS] - ears) @ R.T + ears
    pose = p.person_pose()
    pose.landmarks[:, :2] = intr.project(cam)
    hip = (cam[LM["left_hip"]] + cam[LM["right_hip"]]) / 2
    pose.world = (cam - hip).astype(np.float32)
    if spoil_world:  # the world head is unreliable: squeezed to half its size and 3 cm off, depths kept
        w = pose.world.astype(float)
        wc = w[_HEAD_LMS, :2].mean(0)
        w[_HEAD_LMS, :2] = (w[_HEAD_LMS, :2] - wc) * 0.5 + wc + [0.03, -0.02]
        pose.world = w.astype(np.float32)
    return cam, pose


def _project_gl(intr, M, pts):
    g = (M @ np.column_stack([pts, np.ones(len(pts))]).T).T[:, :3]
    return intr.project(g @ CV_TO_GL.T)


@pytest.mark.parametrize("yaw,roll", [(0.0, 0.0), (25.0, 0.0), (-30.0, 10.0), (0.0, -15.0)])
def test_glasses_lens_centres_project_onto_the_eyes(intr, catalog, yaw, roll):
    cam, pose = _real_head_pose(intr, yaw, roll)
    fit = BodyFitter(intr, smoothing=None).fit(pose, 0.0)
    g = catalog.load("GLS-003")
    lenses = [pt for pt in g.parts if pt.name == "lenses"][0]
    assert lenses.anchor == "eyes"
    v = np.asarray(lenses.mesh.vertices)
    centres = np.array([v[v[:, 0] > 0].mean(0), v[v[:, 0] < 0].mean(0)])  # wearer's left, right lens
    uv = _project_gl(intr, fit.poses["eyes"], centres)
    eyes_uv = pose.landmarks[[LM["left_eye"], LM["right_eye"]], :2]
    assert np.abs(uv - eyes_uv).max() < 3.0, (uv, eyes_uv)
    # bridge at the nose bridge (between the eyes), temples toward the ears
    frame = [pt for pt in g.parts if pt.name == "frame"][0]
    fv = np.asarray(frame.mesh.vertices)
    bridge = fv[(np.abs(fv[:, 0]) < 0.003) & (fv[:, 2] > 0)].mean(0)
    np.testing.assert_allclose(_project_gl(intr, fit.poses["eyes"], bridge[None])[0], eyes_uv.mean(0), atol=6.0)
    ears_uv = pose.landmarks[[LM["left_ear"], LM["right_ear"]], :2]
    for sgn, ear in zip((1, -1), ears_uv):
        back = fv[sgn * fv[:, 0] > 0]
        tip = back[np.argmin(back[:, 2])]  # rearmost point of the temple
        assert np.linalg.norm(_project_gl(intr, fit.poses["eyes"], tip[None])[0] - ear) < 0.25 * np.linalg.norm(
            ears_uv[0] - ears_uv[1]) + 4
    # rolled with the head: the lens line is parallel to the eye line in the image
    d_l, d_e = uv[0] - uv[1], eyes_uv[0] - eyes_uv[1]
    assert math.degrees(abs(math.atan2(d_l[1], d_l[0]) - math.atan2(d_e[1], d_e[0]))) < 1.0


@pytest.mark.parametrize("yaw,roll", [(0.0, 0.0), (25.0, 0.0), (-20.0, 12.0)])
def test_beanie_brim_sits_above_the_eye_line(intr, catalog, yaw, roll):
    from edge.tryon.garment_builders import BEANIE_BRIM, EYE_TO_CROWN
    cam, pose = _real_head_pose(intr, yaw, roll)
    fit = BodyFitter(intr, smoothing=None).fit(pose, 0.0)
    g = catalog.load("BNE-004")
    assert {pt.anchor for pt in g.parts} == {"head"}
    v = np.asarray([pt for pt in g.parts if pt.name == "beanie"][0].mesh.vertices)
    brim = v[v[:, 1] < v[:, 1].min() + 1e-4]
    front = brim[np.argmax(brim[:, 2])]  # brim over the middle of the forehead
    uv_front = _project_gl(intr, fit.poses["head"], front[None])[0]
    eyes_uv = pose.landmarks[[LM["left_eye"], LM["right_eye"]], :2]
    mid = eyes_uv.mean(0)
    e = eyes_uv[0] - eyes_uv[1]
    up = np.array([e[1], -e[0]]) / np.linalg.norm(e)  # image "up" of the rolled face (v grows downward)
    if up[1] > 0:
        up = -up
    z = cam[[LM["left_eye"], LM["right_eye"]], 2].mean()
    px_per_m = intr.fy / z
    h = float(np.dot(uv_front - mid, up)) / px_per_m  # brim height above the eye line (m)
    assert 0.30 * EYE_TO_CROWN < h < 0.50 * EYE_TO_CROWN, h
    assert h == pytest.approx(BEANIE_BRIM * EYE_TO_CROWN, abs=0.10 * EYE_TO_CROWN)
    # the front half of the brim (the back is hidden by the head) is above the eye line, and the beanie is about
    # as wide as the ears are apart
    uv_brim = _project_gl(intr, fit.poses["head"], brim[brim[:, 2] > np.median(brim[:, 2])])
    assert ((uv_brim - mid) @ up).min() > 0
    ears_uv = pose.landmarks[[LM["left_ear"], LM["right_ear"]], :2]
    ear_px = np.linalg.norm(ears_uv[0] - ears_uv[1])
    all_uv = _project_gl(intr, fit.poses["head"], v)
    across = all_uv @ (e / np.linalg.norm(e))
    assert 0.9 * ear_px < across.max() - across.min() < 1.4 * ear_px / max(math.cos(math.radians(yaw)), 0.5)


def test_head_frames_follow_the_2d_landmarks_not_the_world_head(intr):
    """A shifted/squeezed world head does not move the head frames (they are anchored on the 2D landmarks)."""
    _, good = _real_head_pose(intr, 20.0, 8.0, spoil_world=False)
    _, bad = _real_head_pose(intr, 20.0, 8.0, spoil_world=True)
    fg = BodyFitter(intr, smoothing=None).fit(good, 0.0)
    fb = BodyFitter(intr, smoothing=None).fit(bad, 0.0)
    pts = np.array([[0, 0, 0], [0.07, 0, 0], [-0.07, 0, 0], [0, 0.1, 0], [0, 0, 0.1], [0.03, 0.05, 0.08]])
    for a in ("head", "eyes"):  # the depth may differ a little (ears/nose are in the body solve): compare images
        np.testing.assert_allclose(_project_gl(intr, fb.poses[a], pts), _project_gl(intr, fg.poses[a], pts), atol=1.5)


def test_no_fit_without_visible_shoulders(intr):
    pose = render_person(intr).person_pose()
    pose.landmarks[LM["left_shoulder"], 3] = 0.1
    assert BodyFitter(intr, smoothing=None).fit(pose, 0.0) is None


def test_build_fit_is_pure_function_of_joints():
    joints = np.zeros((15, 3))
    from edge.tryon.fitting import J
    for n, xyz in {"left_shoulder": (0.18, -0.2, 2), "right_shoulder": (-0.18, -0.2, 2), "left_hip": (0.1, 0.3, 2),
                   "right_hip": (-0.1, 0.3, 2), "left_elbow": (0.2, 0.08, 2), "right_elbow": (-0.2, 0.08, 2),
                   "left_wrist": (0.2, 0.33, 2), "right_wrist": (-0.2, 0.33, 2), "left_ear": (0.075, -0.36, 2),
                   "right_ear": (-0.075, -0.36, 2), "left_eye": (0.03, -0.36, 1.9),
                   "right_eye": (-0.03, -0.36, 1.9)}.items():
        joints[J[n]] = xyz
    fit = build_fit(joints, np.zeros(3), dict(DEFAULT_REF))
    np.testing.assert_allclose(fit.poses["torso"][:3, 3], [0, 0.2, -2])
    np.testing.assert_allclose(np.diag(fit.poses["torso"][:3, :3]), [1, 1, 1], atol=1e-9)
    assert fit.shoulder_width_m == pytest.approx(0.36)
    assert fit.torso_length_m == pytest.approx(0.50)


def test_one_euro_removes_jitter_but_follows_motion():
    rng = np.random.default_rng(0)
    f = OneEuroFilter(min_cutoff=0.8, beta=4.0)
    still = [f(np.array([1.0]) + rng.normal(0, 0.01, 1), i / 30) for i in range(120)]
    assert np.std(np.array(still[30:])) < 0.01 / 2.5
    moved = [f(np.array([1.3]), (120 + i) / 30) for i in range(15)]
    assert moved[-1][0] == pytest.approx(1.3, abs=0.01)  # within half a second


def test_size_suggestion():
    chart = {"S": (0.0, 0.34), "M": (0.34, 0.37), "L": (0.37, 9.0)}
    assert suggest_size(chart, 0.36) == "M"
    assert suggest_size(chart, 0.40) == "L"
    assert suggest_size({}, 0.36) is None
    est = ShoulderWidthEstimator(min_samples=10)
    for w in np.random.default_rng(0).normal(0.355, 0.004, 9):
        est.add(w)
    assert est.value() is None  # not enough samples yet
    est.add(0.356)
    assert est.value() == pytest.approx(0.355, abs=0.004)
    est.add(0.60, facing=False)  # turned: ignored
    assert est.value() == pytest.approx(0.355, abs=0.004)
