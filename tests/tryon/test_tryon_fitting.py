"""Fitting math: known landmarks -> expected camera-space transforms; smoothing; sizing."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge.pose.types import LM
from edge.tryon.fitting import CV_TO_GL, BodyFitter, build_fit, solve_translation
from edge.tryon.garments import DEFAULT_REF
from edge.tryon.mannequin import render_person
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
    fit = BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0)
    H = fit.poses["head"]
    z = H[:3, 2] / np.linalg.norm(H[:3, 2])
    a = math.radians(25)
    np.testing.assert_allclose(z, [math.sin(a), 0, math.cos(a)], atol=1e-6)


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
