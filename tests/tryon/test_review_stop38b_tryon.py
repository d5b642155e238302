"""What a shopper at the mirror would hit (review): a second person in view (who is dressed, and the garment, the
size and the hands when the shopper changes), a size suggestion on a size boundary, arms crossing with open hands,
a garment that loads but cannot be drawn, a stream client that stops reading, and the page after the device
restarts."""
from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from devtools.mannequin import MannequinSource, TruthPose, render_person
from edge.core.frames import Frame
from edge.core.paths import cache_dir
from edge.pose.types import LM, PersonPose, PoseResult
from edge.tryon.config import GesturesSection, SwipeSection, TryOnConfig
from edge.tryon.fitting import BodyFit
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.pipeline import TryOnPipeline
from waiting import feed_until_dropped, http_up, wait_until

REAL_CACHE = cache_dir()  # read at import, before the try-on fixtures point the cache at a temporary folder
REPO = Path(__file__).resolve().parents[2]


# -- who is dressed -----------------------------------------------------------------------------------------------
def _two_people(intr: Intrinsics):
    """A (track 1) on the left of the picture and B (track 2) on the right, both in one image."""
    a = render_person(intr, x_offset=-0.45)
    b = render_person(intr, x_offset=0.45, bg=a.image)
    pa = a.person_pose()
    pb = dataclasses.replace(b.person_pose(), track_id=2)
    return b.image, pa, pb


def _result(seq: int, t: float, image: np.ndarray, people: list[PersonPose]) -> PoseResult:
    return PoseResult(frame_seq=seq, t=t, image_size=image.shape[:2], people=people)


def _frame(image: np.ndarray, seq: int, t: float) -> Frame:
    return Frame(image.copy(), seq, time.monotonic(), time.time(), "test", t_media=t)


def _shoulder_error_px(item, person: PersonPose, intr: Intrinsics) -> float:
    """How far the fitted shoulders project from the person's 2D shoulders (px)."""
    fitted = intr.project(np.stack([item.fit.joints["left_shoulder"], item.fit.joints["right_shoulder"]]))
    seen = person.landmarks[[LM["left_shoulder"], LM["right_shoulder"]], :2]
    return float(np.abs(fitted - seen).max())


def test_a_second_person_in_view_does_not_take_the_garment(catalog, intr):
    """Two people in front of the mirror with pose scores that trade places from frame to frame (both near 1): the
    garment stays on the shopper it dressed first, it does not jump to the other person on every other frame."""
    image, pa, pb = _two_people(intr)
    pipe = TryOnPipeline(TryOnConfig(), [], None, catalog=catalog)
    try:
        item = pipe.run_sync(_frame(image, 0, 0.0), _result(0, 0.0, image, [pa]))  # A steps in first
        assert item.person.track_id == 1
        for k in range(1, 9):
            t = k / 30
            hi, lo = (0.995, 0.99) if k % 2 else (0.99, 0.995)
            people = [dataclasses.replace(pa, score=lo), dataclasses.replace(pb, score=hi)]
            item = pipe.run_sync(_frame(image, k, t), _result(k, t, image, people))
            assert item.person.track_id == 1, f"frame {k}: the garment went to the other person"
            x, _, w, _ = item.garment_layer.bbox
            assert x + w / 2 < intr.width / 2, "the garment is not over the shopper on the left"
    finally:
        pipe.close_sync()


def test_the_render_thread_dresses_the_shopper_the_pose_thread_chose(catalog, intr):
    """The shopper is chosen once per frame on the pose thread (the gestures see that choice too): when the render
    thread skipped the frame where A was missing and B became the shopper, it dresses B, not A again by its own
    memory (the garment on A while B's hands changed it)."""
    image, pa, pb = _two_people(intr)
    pipe = TryOnPipeline(TryOnConfig(), [], None, catalog=catalog)
    try:
        assert pipe.run_sync(_frame(image, 0, 0.0), _result(0, 0.0, image, [pa])).person.track_id == 1
        assert pipe.shopper(_result(1, 1 / 30, image, [pb])).track_id == 2  # a pose frame the render skipped
        item = pipe.run_sync(_frame(image, 2, 2 / 30), _result(2, 2 / 30, image, [pa, pb]))
        assert item.person.track_id == 2
    finally:
        pipe.close_sync()


def test_when_the_shopper_changes_the_garment_and_the_size_start_afresh(catalog, intr):
    """Shopper A is dressed and measured, then leaves as B (already in view) becomes the shopper: on B's first frame
    the garment sits on B's shoulders (it does not glide over from where A stood, through the smoothing filter), and
    A's size is not shown to B."""
    image, pa, pb = _two_people(intr)
    pipe = TryOnPipeline(TryOnConfig(), [], None, catalog=catalog)
    try:
        for k in range(20):
            t = k / 30
            item = pipe.run_sync(_frame(image, k, t), _result(k, t, image, [pa]))
        assert item.person.track_id == 1 and _shoulder_error_px(item, pa, intr) < 2.0
        assert pipe.size_suggestion == "M"
        t = 20 / 30
        item = pipe.run_sync(_frame(image, 20, t), _result(20, t, image, [pb]))
        assert item.person.track_id == 2
        err = _shoulder_error_px(item, pb, intr)
        assert err < 2.0, f"the garment's shoulders are {err:.0f} px from B's on B's first frame"
        assert pipe.size_suggestion is None, "B is shown A's size"
    finally:
        pipe.close_sync()


# -- size suggestion ----------------------------------------------------------------------------------------------
def test_size_suggestion_on_a_size_boundary_does_not_flip(catalog, intr):
    """A still shopper whose shoulders measure 0.370 m, the M/L boundary of the tee's chart, with the landmark noise
    of a real pose (4 mm): the running median wanders across the boundary, but the page does not flip between M
    and L (30 s of frames: at most the first settling change)."""
    pipe = TryOnPipeline(TryOnConfig(), [], None, catalog=catalog)
    garment = catalog.load("TEE-001")
    lo, hi = garment.size_chart["M"][1], garment.size_chart["L"][0]
    assert lo == hi == 0.37
    person = render_person(intr).person_pose()
    rng = np.random.default_rng(3)
    image = np.zeros((intr.height, intr.width, 3), np.uint8)
    shown = []
    for k in range(900):
        t = k / 30
        fit = BodyFit(joints={}, poses={}, translation=np.zeros(3), shoulder_width_m=0.370 + rng.normal(0, 0.004),
                      torso_length_m=0.5, yaw_deg=0.0)
        pipe._update_analytics(_frame(image, k, t), person, fit, garment)
        if pipe.size_suggestion is not None:
            shown.append(pipe.size_suggestion)
    changes = sum(a != b for a, b in zip(shown, shown[1:]))
    assert shown and set(shown) <= {"M", "L"} and changes <= 1, f"the size changed {changes} times"


# -- gestures -----------------------------------------------------------------------------------------------------
def _session(name: str):
    from edge.backends import load_session
    from models.zoo import ModelNotBuilt, ModelZoo

    try:
        path = ModelZoo(REAL_CACHE).artifact(name, "onnxruntime", "fp32").path
    except ModelNotBuilt as e:
        pytest.fail(f"the hand models are not built (run `edge models build`): {e}")
    return load_session("onnxruntime", path, threads=1)


@pytest.fixture(scope="module")
def templates():
    """The package photos' real hands (devtools.hand_scenes), found by the full hand models."""
    from devtools.hand_scenes import find_templates

    return find_templates(_session("palm_detection_full"), _session("hand_landmark_full"))


def test_crossing_the_arms_with_open_hands_is_no_swipe(templates):
    """The shopper crosses the arms with flat hands: each hand moves sideways as far and as fast as a swipe, but the
    other way from the other hand. No swipe (it changed the garment every time); a one-handed swipe still counts."""
    from devtools.hand_scenes import H, W, _Builder, gesture_script, min_jerk
    from edge.tryon.gestures import GestureRecognizer

    cfg = GesturesSection(enabled=True)
    tpl, size = templates["open"][0], 0.32

    def cross(dur: float, seed: int):
        b = _Builder("cross", 30.0, np.random.default_rng(seed))
        t0 = b.t

        def left(t, body):  # the left hand, mirrored, from the display left across to the right elbow
            u = min_jerk(min(1.0, (t - t0 + 1 / 30) / dur))
            return [b._pose(tpl, "left", -0.7 + 1.1 * u, 1.1 - 0.4 * u, size, -0.3 + 1.5 * u, body)]
        b.move(tpl, "right", (0.7, 1.1, size, 0.3), (-0.4, 0.7, size, -1.2), dur, extra=left)
        b.move(tpl, "right", (-0.4, 0.7, size, -1.2), (-0.4, 0.7, size, -1.2), 0.6,
               extra=lambda t, body: [b._pose(tpl, "left", 0.4, 0.7, size, 1.2, body)])
        return b.build()

    def events(script, seed):
        rec, rng = GestureRecognizer(cfg), np.random.default_rng(seed)
        return [e.kind for t, poses, body in script.frames
                for e in rec.update(t, [p.template.hand(p, rng, 1.5, 0.002) for p in poses], (H, W), body)]

    for i, dur in enumerate((0.4, 0.6, 0.8)):
        assert events(cross(dur, i), i) == [], f"crossing the arms in {dur} s fired a gesture"
    swipe = gesture_script("swipe_left", templates, cfg, np.random.default_rng(100))
    assert events(swipe, 0) == ["swipe_left"]


def test_the_shopper_changing_with_a_raised_hand_is_no_swipe(templates):
    """Real hand models on pasted real hands: shopper A holds a hand up to their right, B (in view, hand up near
    their chest) becomes the shopper when A leaves. The hand tracks and the recognizer start afresh with B; carried
    over, B's hand read as A's hand jumping across (relative to the new shoulders) and fired a swipe."""
    from calibration.photos import load_photo
    from devtools.hand_scenes import H, W, HandPose, pose_landmarks
    from devtools.motion import window_view
    from edge.hands.config import HandsConfig
    from edge.hands.pipeline import HandsStage
    from edge.tryon.gestures import BodyRef, MirrorGestures
    from edge.tryon.session import main_person

    cfg = GesturesSection(enabled=True, budget_ms=0, swipe=SwipeSection(open_hand=False))
    stage = HandsStage(HandsConfig(), _session("palm_detection_lite"), _session("hand_landmark_lite"))
    g = MirrorGestures(cfg, stage, mirror=True)
    background = window_view(load_photo("astronaut", REAL_CACHE), W, H, 560)
    tpl = templates["point"][0]
    a_body, b_body = BodyRef(260.0, 200.0, 150.0), BodyRef(440.0, 200.0, 150.0)
    # A's right hand 0.8 shoulder widths to A's right (display), B's right hand 0.3 to B's left
    a_hand = HandPose(tpl, "right", a_body.cx - 0.8 * a_body.scale, 190.0, 0.32 * a_body.scale, 0.0)
    b_hand = HandPose(tpl, "right", b_body.cx + 0.3 * b_body.scale, 190.0, 0.32 * b_body.scale, 0.0)

    def person(track: int, body: BodyRef, hand: HandPose, score: float) -> PersonPose:
        lm = pose_landmarks([hand], body).astype(np.float32)
        return PersonPose(track, lm, np.zeros((33, 3), np.float32), score, None)

    shopper: list[int | None] = [None]

    def choose(pr: PoseResult) -> PersonPose | None:  # what TryOnPipeline.shopper does on the pose thread
        p = main_person(pr, shopper[0])
        shopper[0] = p.track_id if p is not None else None
        return p

    try:
        ran = 0
        for i in range(60):
            t = i / 30
            img = background.copy()
            hands = [a_hand, b_hand] if i < 30 else [b_hand]  # A leaves after 1 s
            for p in hands:
                p.template.paste(img, p)
            people = [person(2, b_body, b_hand, 0.98)] + ([person(1, a_body, a_hand, 0.99)] if i < 30 else [])
            frame = Frame(img, i, t, t)
            pr = PoseResult(i, t, (H, W), people)
            g.process(frame, pr, choose(pr))
            ran += g.last is not None and g.last.frame_seq == i and bool(g.last.hands)
        assert ran >= 50, f"the hand models found the hands on only {ran} of 60 frames"
        swipes = [(e.kind, round(e.t, 2)) for e in g.events if e.kind.startswith("swipe")]
        assert swipes == [], f"the change of shopper fired {swipes}"
    finally:
        g.close()


# -- a garment that loads but cannot be drawn ---------------------------------------------------------------------
def test_a_garment_that_cannot_be_drawn_is_left_out_and_the_mirror_goes_back(tmp_path, tryon_cache, caplog):
    """A catalogue garment whose model loads but whose texture no GL takes (wider than any GL_MAX_TEXTURE_SIZE): the
    first frame that tries to draw it fails once (logged), the garment is left out of the catalogue like one whose
    model does not load, and the mirror goes back to the garment shown before; it failed on every frame, each with
    a traceback, and the shopper saw no garment."""
    import PIL.Image
    import trimesh

    from edge.tryon.garments import BUILTIN_CATALOG, Catalog, CatalogError

    box = trimesh.creation.box((0.34, 0.5, 0.2))
    box.apply_translation((0, -0.25, 0))
    tex = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 255, (2, 1 << 17, 3), np.uint8))
    box.visual = trimesh.visual.TextureVisuals(uv=np.random.default_rng(1).random((len(box.vertices), 2)), image=tex)
    box.export(tmp_path / "wide.glb")
    (tmp_path / "wide.json").write_text(json.dumps({
        "format": "storefront-edge/garment-anchors@1", "units": "m", "name": "Wide print", "default_anchor": "torso",
        "parts": [{"node": "geometry_0", "anchor": "torso", "tint": False}]}))
    builtin = json.loads(BUILTIN_CATALOG.read_text())["garments"]
    (tmp_path / "catalog.json").write_text(json.dumps({"garments": [builtin[0], {
        "sku": "WIDE-9", "name": "Wide print", "colours": [{"name": "white", "hex": "#ffffff"}],
        "model": "wide.glb"}]}))
    cat = Catalog(tmp_path / "catalog.json", tryon_cache / "garments")
    pipe = TryOnPipeline(TryOnConfig(default_sku="TEE-001", default_colour="red"), [], TruthPose(), catalog=cat)
    frames = iter(MannequinSource(320, 240, n_cycle=2, realtime=False))
    try:
        for _ in range(2):
            assert not pipe.run_sync(next(frames)).garment_layer.empty
        pipe.select("WIDE-9")
        with caplog.at_level("ERROR"):
            items = [pipe.run_sync(next(frames)) for _ in range(5)]
        failed = [r for r in caplog.records if "render failed" in r.getMessage()]
        assert len(failed) == 1, f"{len(failed)} render failures logged"
        assert "WIDE-9" in cat.broken and "cannot be drawn" in cat.broken["WIDE-9"]
        assert cat.skus() == ["TEE-001"] and pipe.selection == ("TEE-001", "red")
        assert all(it.garment_layer is not None and not it.garment_layer.empty for it in items[1:])
        assert items[-1].garment.sku == "TEE-001"
        with pytest.raises(CatalogError, match="cannot be drawn"):
            pipe.select("WIDE-9")
    finally:
        pipe.close_sync()


# -- the stream and the page ----------------------------------------------------------------------------------------
def _request_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request_thread" in t.name and t.is_alive()}


def test_a_stream_client_that_stops_reading_is_dropped(catalog, monkeypatch):
    """A browser that hangs with its stream socket open stops reading: the handler's write blocks once the socket
    buffers are full. It is dropped after STREAM_SEND_TIMEOUT_S; it stayed blocked for good (a thread and a socket
    per hung client, past the mirror's stop)."""
    from edge.tryon import server as server_module
    from edge.tryon.server import serve

    monkeypatch.setattr(server_module, "STREAM_SEND_TIMEOUT_S", 1.0)
    pipe = TryOnPipeline(TryOnConfig(), [], None, catalog=catalog)
    srv = serve(pipe, "127.0.0.1", 0, background=True)
    before = _request_threads()
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        client.connect(("127.0.0.1", srv.port))
        client.sendall(b"GET /mirror/stream.mjpg HTTP/1.1\r\nHost: mirror\r\n\r\n")
        assert wait_until(lambda: len(_request_threads() - before) == 1, timeout=10)
        (handler,) = _request_threads() - before
        def send(k: int, img: np.ndarray) -> None:
            f = Frame(img, k, time.monotonic(), time.time(), "noise")
            pipe.run_sync(f, PoseResult(k, f.t, f.shape))

        k = feed_until_dropped(handler.is_alive, send, 15)
        assert not handler.is_alive(), "the stream handler is still blocked writing to a client that reads nothing"
        assert k >= 5
    finally:
        client.close()
        pipe.close_sync()
        srv.stop()


_SERVER = """
import sys, threading, time
import numpy as np
from edge.core.frames import Frame
from edge.pose.types import PoseResult
from edge.tryon.config import TryOnConfig
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve

class Camera:
    def __init__(self, level):
        self.level, self.stopped = level, threading.Event()
    def stop(self):
        self.stopped.set()
    def __iter__(self):
        k = 0
        while not self.stopped.wait(1 / 15):
            yield Frame(np.full((240, 320, 3), self.level, np.uint8), k, time.monotonic(), time.time(), "cam")
            k += 1

class Nobody:
    def process(self, f):
        return PoseResult(f.seq, f.t, f.shape)

pipe = TryOnPipeline(TryOnConfig(), Camera(int(sys.argv[2])), Nobody()).start()
serve(pipe, "127.0.0.1", int(sys.argv[1]))
"""


def test_the_page_shows_the_live_picture_again_after_the_device_restarts(tmp_path):
    """The mirror page stays open in the kiosk browser while the runtime restarts (a crash, an update): the MJPEG
    picture is one long response that ends with the old process, and the <img> kept its last frame for good (a
    frozen mirror) while the rest of the page came back. Now the page opens a new stream."""
    from devtools.broker import free_port
    from webdriver_client import chromium

    port = free_port()

    def start(level: int) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port), str(level)], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        up = wait_until(lambda: http_up(port) or proc.poll() is not None, timeout=120)
        assert up and proc.poll() is None, f"the mirror server did not start (exit code {proc.poll()})"
        return proc

    picture = ("const v = document.getElementById('video'); if (!v.naturalWidth) return null;"
               "const c = document.createElement('canvas'); c.width = c.height = 4;"
               "const x = c.getContext('2d'); x.drawImage(v, 0, 0, 4, 4); return x.getImageData(1, 1, 1, 1).data[0];")
    proc = start(40)
    try:
        with chromium(tmp_path / "profile") as wd:
            wd.cmd("POST", "/url", {"url": f"http://127.0.0.1:{port}/mirror/"})
            assert wait_until(lambda: abs((wd.js(picture) or 0) - 40) <= 3, timeout=60), (
                f"the page does not show the picture ({wd.js(picture)})")
            proc.kill()
            proc.wait(10)
            time.sleep(1.5)  # the page's state polls fail while the device is down
            proc = start(200)
            assert wait_until(lambda: abs((wd.js(picture) or 0) - 200) <= 3, timeout=30), (
                f"the page still shows the old picture ({wd.js(picture)}) after the restart")
    finally:
        proc.kill()
        proc.wait(10)


def test_a_renderer_that_fails_before_anything_drew_leaves_out_one_garment_not_the_catalogue(tryon_cache):
    """A renderer failing for a reason of its own before any garment drew (every draw raises) must not mark every
    garment of the catalogue undrawable in turn: one is left out, the others stay for when it recovers."""
    from edge.tryon.garments import BUILTIN_CATALOG, Catalog

    cat = Catalog(BUILTIN_CATALOG, tryon_cache / "garments")
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), catalog=cat)
    frames = iter(MannequinSource(320, 240, n_cycle=2, realtime=False))
    skus = cat.skus()
    try:
        pipe.run_sync(next(frames))
        st = pipe._sync

        def broken(*_a, **_k):
            raise RuntimeError("GL_OUT_OF_MEMORY")
        st.renderer.render = broken
        st.drawn, st.shown = (None, None), (None, None)
        for _ in range(2 * len(skus)):
            pipe.run_sync(next(frames))
        assert len(cat.broken) == 1 and len(cat.skus()) == len(skus) - 1, cat.broken
    finally:
        pipe.close_sync()
