"""The mirror on bad input: non-finite landmarks (also to the circuit breaker), empty frames, pose failures, a bad
render setting, broken catalogue entries and garment files (also the default one), and one shopper's state (the size
suggestion) never reaching the next."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from devtools.mannequin import MannequinSource, TruthPose
from edge.core.breaker import OPEN, BreakerPolicy, CircuitBreaker
from edge.core.events import ListSink
from edge.core.frames import Frame
from edge.pose.types import LM, PoseResult
from edge.tryon.config import TryOnConfig
from edge.tryon.fitting import BodyFitter
from edge.tryon.garments import BUILTIN_CATALOG, Catalog, CatalogError
from edge.tryon import pipeline as pipeline_module
from edge.tryon.pipeline import TryOnPipeline, torso_visibility
from waiting import wait_until


def _frames(width=320, height=240, n_cycle=2, t0=0.0, dt=1 / 30):
    """Mannequin frames on a media clock (t = t0, t0 + dt, ...), as fast as they are taken."""
    for k, f in enumerate(MannequinSource(width, height, n_cycle=n_cycle, realtime=False)):
        f.t_media = t0 + k * dt
        yield f


def _with_person(pr: PoseResult, **changes) -> PoseResult:
    return dataclasses.replace(pr, people=[dataclasses.replace(pr.people[0], **changes)])


def _nobody(f: Frame) -> PoseResult:
    return PoseResult(frame_seq=f.seq, t=f.t, image_size=f.shape, clock=f.clock)


@pytest.mark.parametrize("bad", ["world_nan", "visibility_nan", "landmark_inf"])
def test_one_non_finite_pose_does_not_hide_the_garment_for_the_rest_of_the_visit(catalog, bad):
    """A pose with NaN/inf is skipped; it never enters the smoothing filter, so the next good frame is dressed."""
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), catalog=catalog)
    frames = _frames()
    try:
        for _ in range(3):
            assert not pipe.run_sync(next(frames)).garment_layer.empty
        f = next(frames)
        p = f.meta["pose_truth"].people[0]
        lm, world = p.landmarks.copy(), p.world.copy()
        if bad == "world_nan":
            world[LM["right_shoulder"], 1] = np.nan
        elif bad == "visibility_nan":
            lm[:, 3] = np.nan
        else:
            lm[LM["left_hip"], :2] = np.inf
        item = pipe.run_sync(f, _with_person(f.meta["pose_truth"], landmarks=lm, world=world))
        assert item.fit is None
        for _ in range(3):
            item = pipe.run_sync(next(frames))
            assert item.fit is not None and all(np.isfinite(m).all() for m in item.fit.poses.values())
            assert not item.garment_layer.empty
    finally:
        pipe.close_sync()


def test_nan_torso_visibility_is_low_confidence_to_the_breaker(catalog):
    """NaN visibilities reach the mirror's breaker as 0 (not seen), so they open it like a hidden torso; as NaN the
    breaker took them for good samples (NaN < threshold is False) and stayed closed."""
    now = [0.0]
    breaker = CircuitBreaker("mirror", policy=BreakerPolicy(window_s=1.0, min_samples=5, open_s=30.0),
                             clock=lambda: now[0])
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), catalog=catalog, breaker=breaker)
    frames = _frames()
    try:
        for _ in range(12):  # 2.4 s of frames: more than a whole window
            f = next(frames)
            p = f.meta["pose_truth"].people[0]
            lm = p.landmarks.copy()
            lm[:, 3] = np.nan
            pr = _with_person(f.meta["pose_truth"], landmarks=lm)
            pipe.run_sync(f, pr)
            now[0] += 0.2
    finally:
        pipe.close_sync()
    assert breaker.state == OPEN and breaker.last_open.reason == "low_confidence"
    assert "visibility 0.00 < 0.5" in breaker.last_open.summary
    assert torso_visibility(pr.people[0]) == 0.0


class _FailingPose(TruthPose):
    """The pose stage raises on every frame (a lost backend, an open model circuit)."""

    def process(self, frame):
        raise RuntimeError("pose backend lost")


def test_pose_failures_are_counted_and_their_log_is_rate_limited(catalog, caplog, monkeypatch):
    """Every failed pose frame is counted (pipeline.frame_errors, the state, `edge_frame_errors_total`); the log
    has the first failure with its traceback, then a count per POSE_ERROR_LOG_S, not one traceback per frame."""
    monkeypatch.setattr(pipeline_module, "POSE_ERROR_LOG_S", 0.3)
    metric = ("edge_frame_errors_total", {"error": "RuntimeError"})
    before = REGISTRY.get_sample_value(*metric) or 0.0
    pipe = TryOnPipeline(TryOnConfig(), MannequinSource(160, 120, fps=30, n_cycle=1), _FailingPose(),
                         catalog=catalog)
    with caplog.at_level("WARNING", logger="edge.tryon.pipeline"):
        pipe.start()
        try:
            assert wait_until(lambda: pipe.frame_errors >= 30 and any(
                "more frames" in r.getMessage() for r in caplog.records), timeout=30)
        finally:
            pipe.stop()
    pose_logs = [r for r in caplog.records if "pose failed" in r.getMessage()]
    with_traceback = [r for r in pose_logs if r.exc_info]
    assert len(with_traceback) == 1 and "pose backend lost" in str(with_traceback[0].exc_info[1])
    counts = [r for r in pose_logs if not r.exc_info]
    assert counts and len(pose_logs) < pipe.frame_errors
    assert "RuntimeError: pose backend lost" in counts[-1].getMessage()
    assert pipe.last_frame_error == "RuntimeError: pose backend lost"
    assert pipe.state()["frame_errors"] == pipe.frame_errors
    assert REGISTRY.get_sample_value(*metric) - before == pipe.frame_errors
    f = pipe.latest()  # the frames are still shown, without a garment
    assert f is not None and not f.meta["tryon"]["rendered"]


def test_fitter_skips_non_finite_landmarks_and_keeps_its_filter(intr):
    from devtools.mannequin import render_person

    person = render_person(intr).person_pose()
    fitter = BodyFitter(intr)
    good = fitter.fit(person, 0.0)
    world = person.world.copy()
    world[LM["left_hip"]] = np.nan
    assert fitter.fit(dataclasses.replace(person, world=world), 0.033) is None
    again = fitter.fit(person, 0.066)
    assert np.allclose(again.poses["torso"], good.poses["torso"], atol=1e-6)


def test_size_suggestion_is_not_handed_to_the_next_shopper(catalog):
    """Shopper A is measured (size M); A leaves for longer than the absence timeout; B steps in and leaves before
    being measured: neither the page nor B's session event shows A's size."""
    sink = ListSink()
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), sink, catalog=catalog)
    frames = _frames()
    try:
        for _ in range(40):
            pipe.run_sync(next(frames))
        assert pipe.size_suggestion == "M"
        t = pipe.sessions._last_now
        for dt in (0.1, 3.5):  # nobody in front of the mirror for longer than absence_timeout_s (3 s)
            f = next(frames)
            f.t_media = t + dt
            pipe.run_sync(f, _nobody(f))
        assert pipe.sessions.current is None
        assert pipe.size_suggestion is None and pipe.state()["size_suggestion"] is None
        for k in range(8):  # shopper B: 8 frames over 1.6 s, too few to be measured
            f = next(frames)
            f.t_media = t + 5.0 + 0.2 * k
            pipe.run_sync(f)
            assert pipe.size_suggestion is None
        pipe.sessions.close()
    finally:
        pipe.close_sync()
    a, b = sink.events
    assert a.data["size_suggested"] == "M" and b.data["size_suggested"] is None


class _EmptyFrameAt:
    """A paced mannequin camera that delivers one empty frame (a capture hiccup) at `at`."""

    def __init__(self, at: int):
        self.src, self.at = MannequinSource(320, 240, fps=30, n_cycle=2), at

    def stop(self):
        self.src.stop()

    def __iter__(self):
        for f in self.src:
            if f.seq == self.at:
                f.image = np.zeros((0, 0, 3), np.uint8)
                f.meta.pop("pose_truth")
            yield f


def test_an_empty_camera_frame_does_not_stop_the_mirror(catalog):
    pipe = TryOnPipeline(TryOnConfig(), _EmptyFrameAt(5), TruthPose(), catalog=catalog).start()
    try:
        f = pipe.wait_frame(-1, timeout=30)
        assert f is not None
        f = pipe.wait_frame(15, timeout=10)  # well past the empty frame
    finally:
        pipe.stop()
    assert f is not None and f.meta["tryon"]["rendered"]
    assert all(t.is_alive() is False for t in pipe._threads)


def test_bad_shader_cache_dir_gives_the_plain_camera_view(catalog, tmp_path):
    """An unusable [tryon.render] shader_cache_dir: the mirror keeps showing the camera and says why."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cfg = TryOnConfig(render={"shader_cache_dir": str(blocker / "shaders")})
    src = MannequinSource(320, 240, fps=30, n_cycle=1)
    pipe = TryOnPipeline(cfg, src, TruthPose(), catalog=catalog).start()
    try:
        f = pipe.wait_frame(10, timeout=30)
        st = pipe.state()
    finally:
        pipe.stop()
    assert f is not None and not f.meta["tryon"]["rendered"]
    assert st["renderer"] == "unavailable" and "not-a-dir" in st["renderer_error"]
    camera = src.cycle[0].image[:, ::-1]  # the mirror view of the camera frame, no garment
    assert np.array_equal(f.image, camera)


def _catalog_with(tmp_path: Path, change) -> Path:
    data = json.loads(BUILTIN_CATALOG.read_text())
    change(data)
    p = tmp_path / "catalog.json"
    p.write_text(json.dumps(data))
    return p


@pytest.mark.parametrize("change, says", [
    (lambda d: d["garments"][0]["colours"].__setitem__(0, {"name": "navy", "hex": "navy"}), "'#rrggbb'"),
    (lambda d: d["garments"][0]["colours"].__setitem__(0, {"name": "navy", "hex": "#fff"}), "'#rrggbb'"),
    (lambda d: d["garments"][0].__setitem__("size_chart", {"M": "0.3"}), "size_chart (TEE-001)['M']"),
    (lambda d: d["garments"][0].__setitem__("size_chart", {"M": [0.4, 0.3]}), "lo < hi"),
    (lambda d: d["garments"][0].__setitem__("size_chart", [0.3, 0.4]), "size_chart (TEE-001)"),
    (lambda d: d["garments"].append("TEE-009"), "garments[4]: expected an object"),
    (lambda d: d["garments"].append(dict(d["garments"][1])), "duplicate SKU 'JKT-002'"),
    (lambda d: d["garments"][0].__setitem__("colours", ["navy"]), "garments[0]: wrong type"),
])
def test_bad_catalogue_entries_are_refused_when_it_is_read(tmp_path, change, says):
    with pytest.raises(CatalogError) as ei:
        Catalog(_catalog_with(tmp_path, change), tmp_path / "cache")
    assert str(tmp_path / "catalog.json") in str(ei.value) and says in str(ei.value)


def test_swatch_colour_without_its_hash_is_served_as_a_css_colour(tmp_path):
    """"b3262b" is taken (as before) but served as "#b3262b": the page sets it as the swatch's CSS background."""
    cat = Catalog(_catalog_with(tmp_path, lambda d: d["garments"][0]["colours"][1].__setitem__("hex", "b3262b")),
                  tmp_path / "cache")
    assert cat.entry("TEE-001").to_public()["colours"][1] == {"name": "red", "hex": "#b3262b"}


def test_catalogue_that_is_not_an_object_is_refused(tmp_path):
    p = tmp_path / "catalog.json"
    p.write_text("[]")
    with pytest.raises(CatalogError, match="expected an object with a 'garments' list"):
        Catalog(p, tmp_path / "cache")


def test_garment_whose_model_is_missing_is_dropped_and_the_mirror_keeps_the_shown_one(tryon_cache, tmp_path,
                                                                                    caplog):
    """The shopper picks a garment whose model file is gone: the mirror keeps dressing the garment shown, says
    so once (not on every frame), and the garment is no longer offered or selectable."""
    extra = {"sku": "HAT-404", "name": "Lost hat", "category": "headwear", "model": "missing/hat.glb",
             "colours": [{"name": "red", "hex": "#aa2222"}]}
    cat = Catalog(_catalog_with(tmp_path, lambda d: d["garments"].append(extra)), tryon_cache / "garments")
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), catalog=cat)
    frames = _frames()
    try:
        pipe.run_sync(next(frames))
        pipe.select("HAT-404")
        with caplog.at_level("WARNING"):
            items = [pipe.run_sync(next(frames)) for _ in range(5)]
        assert pipe.selection == ("TEE-001", "navy")
        assert all(not it.garment_layer.empty and it.garment.sku == "TEE-001" for it in items)
        errors = [r for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and "HAT-404" in errors[0].getMessage() and "hat.json" in errors[0].getMessage()
        assert "HAT-404" not in cat.skus()
        with pytest.raises(CatalogError, match="HAT-404 cannot be shown"):
            pipe.select("HAT-404")
        assert pipe.actions.apply("next_garment")["sku"] == "JKT-002"
        for _ in range(4):  # round the cycle: the missing garment is passed over
            sku = pipe.actions.apply("next_garment")["sku"]
            assert sku != "HAT-404"
    finally:
        pipe.close_sync()


def test_default_garment_whose_model_is_missing_falls_back_to_the_first_that_loads(tryon_cache, tmp_path, caplog):
    """[tryon] default_sku names a garment whose model is gone: the mirror starts on the first garment that loads
    (and says which setting), so the first shopper is dressed without swiping."""
    def break_tee(d):
        tee = d["garments"][0]
        del tee["builder"]
        tee["model"] = "missing/tee.glb"

    cat = Catalog(_catalog_with(tmp_path, break_tee), tryon_cache / "garments")
    with caplog.at_level("WARNING"):
        pipe = TryOnPipeline(TryOnConfig(default_sku="TEE-001"), [], TruthPose(), catalog=cat)
    assert pipe.selection == ("JKT-002", "olive")
    assert any("default_sku 'TEE-001'" in r.getMessage() and "JKT-002" in r.getMessage()
               for r in caplog.records if r.levelname == "WARNING")
    assert "TEE-001" not in cat.skus()
    frames = _frames()
    try:
        items = [pipe.run_sync(next(frames)) for _ in range(3)]
    finally:
        pipe.close_sync()
    assert all(it.garment is not None and it.garment.sku == "JKT-002" and not it.garment_layer.empty
               for it in items)


def test_default_colour_not_in_the_catalogue_falls_back_to_a_real_one(catalog, caplog):
    """A typo in [tryon] default_colour must not become the selection (the page and the session events would
    report a colour the garment does not have)."""
    with caplog.at_level("WARNING"):
        pipe = TryOnPipeline(TryOnConfig(default_sku="JKT-002", default_colour="navvy"), [], TruthPose(),
                             catalog=catalog)
    assert pipe.selection == ("JKT-002", "olive")
    assert any("navvy" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert TryOnPipeline(TryOnConfig(default_sku="JKT-002", default_colour="tan"), [], TruthPose(),
                         catalog=catalog).selection == ("JKT-002", "tan")
