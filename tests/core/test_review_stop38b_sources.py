"""Second look at the frame sources, the reader thread and the extra-camera scheduler: a video whose container clock
starts again (segments joined into one file), a corrupt video file, a stop asked during a slow open, and a critical
camera that delivers fewer frames than its fps."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edge.app.config import SourceSection, parse_config
from edge.app.streams import StreamSet
from edge.core.detections import Detections
from edge.core.events import ListSink
from edge.core.frames import Frame
from edge.sources import LatestFrameReader, SourceError, make_source
from edge.sources.base import FrameSource, MediaClock

from waiting import wait_until


def write_video(path, n: int, fps: float, fourcc: str = "MJPG", size=(160, 120), base: int = 0) -> None:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert vw.isOpened(), f"OpenCV cannot write {path}"
    for i in range(n):
        vw.write(np.full((size[1], size[0], 3), (base + i * 17) % 255, np.uint8))
    vw.release()


def test_a_video_of_joined_segments_keeps_its_clock_running(tmp_path):
    """Two MPEG-TS recordings joined into one file (an NVR export): the container's times start again at 0 in the
    second segment. Media time goes on one frame period per frame (before: once the second segment's times passed
    the first one's end it stood still, 1e-6 s a frame, so a second of media lasted no time for the analytics)."""
    write_video(tmp_path / "a.ts", 10, 10, "mpg2")
    write_video(tmp_path / "b.ts", 30, 10, "mpg2", base=100)
    (tmp_path / "ab.ts").write_bytes((tmp_path / "a.ts").read_bytes() + (tmp_path / "b.ts").read_bytes())
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "ab.ts"), width=160, height=120, loop=False,
                                    realtime=False, start_time="now"))
    with src:
        ts = [f.t for f in src.frames()]
    assert ts == pytest.approx([i / 10 for i in range(40)], abs=1e-3)


def test_media_clock_tells_a_restarted_container_clock_from_a_glitch():
    """A restart (times drop, then increase more than 3 periods below the old highest) goes on from the frame before; a single frame
    without a usable time, a stall or a duplicate keep the container's own mapping afterwards."""
    def stamps(times):
        c = MediaClock(fps=10, start_wall=0.0)
        return [c.stamp(x)[0] for x in times]

    restarted = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0, 0.1, 0.2, 0.3]
    assert stamps(restarted) == pytest.approx([i / 10 for i in range(10)])
    assert stamps([5.0, 5.1, 0.0, 5.3, 5.4]) == pytest.approx([5.0, 5.1, 5.2, 5.3, 5.4])
    assert stamps([0.0, 0.1, 0.0, 0.0, 0.4, 0.5]) == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5])
    assert stamps([0.0, 0.1, None, 0.3]) == pytest.approx([0.0, 0.1, 0.2, 0.3])
    dup = stamps([0.0, 0.1, 0.1, 0.2, 0.3])
    assert all(b > a for a, b in zip(dup, dup[1:])) and dup[-1] == pytest.approx(0.3)


def test_a_corrupt_video_file_is_named_as_such(tmp_path):
    """A file that exists but is no video: the error says so (before: "unplugged, wrong index/path or
    unreachable", the camera's causes)."""
    (tmp_path / "junk.mp4").write_bytes(np.random.default_rng(0).integers(0, 256, 5000, np.uint8).tobytes())
    write_video(tmp_path / "ok.avi", 12, 10)
    data = (tmp_path / "ok.avi").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[:100])  # truncated inside its header
    for name in ("junk.mp4", "cut.avi"):
        with pytest.raises(SourceError, match=rf"cannot open video .*{name}.*not a video FFmpeg can decode"):
            make_source(SourceSection(type="video", uri=str(tmp_path / name))).open()


class SlowOpenStream(FrameSource):
    """An IP camera whose connection takes a while and which then says nothing: open() and read() block in the
    driver (neither can be interrupted)."""

    name = "slow-open"

    def __init__(self):
        self.opening = threading.Event()
        self.reads = 0
        self.closed = False

    def open(self) -> None:
        self.opening.set()
        time.sleep(0.6)

    def read(self) -> Frame | None:
        self.reads += 1
        time.sleep(3.0)
        raise SourceError("stream stopped delivering frames")

    def close(self) -> None:
        self.closed = True


def test_a_stop_asked_during_a_slow_open_does_not_wait_for_a_read():
    """Before: after the open returned, the reader went on to read (another driver timeout) before it looked at
    the stop request, so it missed stop()'s join deadline and was left running."""
    src = SlowOpenStream()
    reader = LatestFrameReader(src, reconnect_s=60).start()
    assert src.opening.wait(5)
    reader.request_stop()
    assert reader.join(time.monotonic() + 2.0)
    assert src.reads == 0 and src.closed


def _critical_cfg(video) -> object:
    src = {"type": "video", "uri": str(video), "loop": True, "realtime": True, "width": 160, "height": 120}
    return parse_config({"device": {"id": "t", "store": "lab", "kind": "shelf-camera"},
                         "models": {"person_detector": {"name": "nanodet_m_416"}},
                         "cameras": [{"id": "mirror", "fps": 30, "critical": True, "source": src},
                                     {"id": "a1", "fps": 5, "source": src}]}, "<test>")


def test_a_critical_camera_slower_than_its_fps_does_not_throttle_the_analytics(tmp_path):
    """A critical camera set to 30 FPS that delivers 20 (a camera slower at night, a stream that lowered its rate):
    the worker processes the frames it gets, so the analytics keep the whole worker (before: the critical stream
    counted as behind, and the analytics were cut to the throttle floor for good, the worker idle)."""
    write_video(tmp_path / "v.avi", 100, 20)
    ss = StreamSet.from_config(_critical_cfg(tmp_path / "v.avi"), lambda f: Detections.empty(), ListSink())
    ss.start()
    try:
        assert wait_until(lambda: ss.streams[0].stats.processed >= 90, 15)  # > 4 s: past the 2 s grace, 4 checks
        health = ss.health()
    finally:
        ss.stop()
    assert health["mirror"]["fps"] < 0.95 * 30, health
    assert ss.min_duty == 1.0 and ss.throttled_s == 0.0, (ss.scheduler_stats(), health)


def test_a_critical_camera_the_worker_cannot_keep_up_with_still_throttles(tmp_path):
    """The same critical camera with a detector too slow for its 20 FPS: it processes fewer frames than its source
    delivers, so the analytics are throttled."""
    write_video(tmp_path / "v.avi", 100, 20)

    def slow(frame: Frame) -> Detections:
        time.sleep(0.15)
        return Detections.empty()

    ss = StreamSet.from_config(_critical_cfg(tmp_path / "v.avi"), slow, ListSink())
    ss.start()
    try:
        assert wait_until(lambda: ss.duty < 1.0, 10), (ss.health(), ss.scheduler_stats())
    finally:
        ss.stop()
    assert ss.streams[0].reader.dropped > 0


class _MirrorRate:
    """The try-on mirror's rate as the runtime reads it (frames_out, fps()): here it shows every frame its camera
    delivers, counted from the reader's own frames."""

    def __init__(self, reader: LatestFrameReader):
        self.reader = reader
        self.frames_out = 0

    def fps(self) -> float:
        return self.reader.fps(window_s=2.0)


def test_a_mirror_camera_slower_than_its_fps_does_not_count_as_the_mirror_falling_behind(tmp_path):
    """The mirror's camera set to 30 FPS delivers 20: the mirror shows all 20, so it is not behind, and the
    analytics cameras must not be throttled for it (before: 20 < 0.95 x 30 throttled them for good). A mirror
    showing fewer frames than its camera delivers still is behind."""
    from edge.app.runner import mirror_behind

    write_video(tmp_path / "v.avi", 100, 20)
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "v.avi"), loop=True, realtime=True, fps=30,
                                    width=160, height=120))
    reader = LatestFrameReader(src).start()
    try:
        time.sleep(2.5)  # two seconds of reads: the window reader.fps() looks at
        assert wait_until(lambda: reader.fps(window_s=2.0) > 15, 10), reader.fps(window_s=2.0)
        mirror = _MirrorRate(reader)
        mirror.frames_out = 45
        assert not mirror_behind(mirror, reader, 30.0)
        mirror.fps = lambda: 10.0  # the mirror shows half of what its camera delivers
        assert mirror_behind(mirror, reader, 30.0)
    finally:
        reader.request_stop()
        reader.join(time.monotonic() + 5)


def test_media_clock_keeps_frames_that_came_out_of_order_on_the_container_clock():
    """Container times a frame or two out of order (decode-order stamps of B-frames) are not a clock restart: the
    media time stays on the container's clock instead of drifting ahead with every group."""
    clock = MediaClock(30.0, 0.0)
    times = [0, .1, .033, .066, .2, .233, .3, .266, .283, .4]
    stamped = [clock.stamp(c)[0] for c in times]
    assert abs(stamped[-1] - 0.4) < 1e-3, stamped
    assert all(b > a for a, b in zip(stamped, stamped[1:]))
