"""The mirror's frame routes at their edges: a stream whose client has gone while no frames come ends, and a frame
the JPEG encoder refuses is a clear 503, not an empty 200."""
from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request

import cv2
import numpy as np
import pytest

from devtools.mannequin import MannequinSource, TruthPose
from edge.core.frames import Frame
from edge.pose.types import PoseResult
from edge.tryon.config import TryOnConfig
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve
from waiting import wait_until


@pytest.fixture()
def idle_mirror(catalog):
    """A mirror that has not stopped but produces no frames (not started), served on a free port."""
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), catalog=catalog)
    srv = serve(pipe, "127.0.0.1", 0, background=True)
    yield pipe, srv
    srv.stop()
    pipe.stop()


def _request_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if "process_request_thread" in t.name and t.is_alive()}


def test_stream_handler_ends_when_its_client_leaves_while_no_frames_come(idle_mirror):
    pipe, srv = idle_mirror
    before = _request_threads()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
    conn.request("GET", "/mirror/stream.mjpg")
    r = conn.getresponse()
    assert r.status == 200 and r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
    assert wait_until(lambda: len(_request_threads() - before) == 1, timeout=10)
    (handler,) = _request_threads() - before
    time.sleep(1.5)  # more than one empty wait for a frame with the client still there: the stream stays open
    assert handler.is_alive()
    r.close()
    conn.close()
    assert wait_until(lambda: not handler.is_alive(), timeout=10), "the stream handler outlived its client"
    assert not pipe._stop.is_set()


def test_frame_that_cannot_be_encoded_is_a_503(catalog):
    """A frame wider than JPEG allows (65500 px): 503 naming the frame, not 200 with an empty body; the next frame
    that encodes is served again."""
    pipe = TryOnPipeline(TryOnConfig(), [], TruthPose(), catalog=catalog)
    srv = serve(pipe, "127.0.0.1", 0, background=True)
    url = f"http://127.0.0.1:{srv.port}/mirror/frame.jpg"
    try:
        wide = Frame(image=np.full((2, 70000, 3), 128, np.uint8), seq=0, t_capture=time.monotonic(),
                     t_wall=time.time(), source="wide")
        pipe.run_sync(wide, PoseResult(frame_seq=0, t=wide.t, image_size=wide.shape, clock=wide.clock))
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(url, timeout=10)
        assert ei.value.code == 503
        assert "frame 0 cannot be encoded as JPEG" in json.loads(ei.value.read())["error"]
        f = next(iter(MannequinSource(160, 120, realtime=False, n_cycle=1)))
        f.seq = 1
        pipe.run_sync(f)
        with urllib.request.urlopen(url, timeout=10) as r:
            assert r.status == 200 and r.headers["X-Frame-Seq"] == "1"
            img = cv2.imdecode(np.frombuffer(r.read(), np.uint8), cv2.IMREAD_COLOR)
        assert img.shape == (120, 160, 3)
    finally:
        pipe.close_sync()
        srv.stop()
