"""Frame sources: files, folders, demo, camera loss and latest-frame back-pressure."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.app.config import SourceSection
from edge.sources import LatestFrameReader, SourceError, make_source
from edge.sources.base import FrameSource
from edge.sources.demo import DemoSource

from waiting import wait_until


def write_video(path, n=12, size=(160, 120)):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(n):
        img = np.full((size[1], size[0], 3), i * 20, np.uint8)
        vw.write(img)
    vw.release()


def test_video_file_plays_once_then_ends(tmp_path):
    write_video(tmp_path / "v.avi")
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "v.avi"), width=160, height=120,
                                    loop=False, realtime=False))
    with src:
        frames = list(src.frames())
    assert len(frames) == 12
    assert [f.seq for f in frames] == list(range(1, 13))
    assert frames[-1].image.mean() > frames[0].image.mean()  # real decoded content, in order


def test_video_loops_and_resizes(tmp_path):
    write_video(tmp_path / "v.avi", n=5)
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "v.avi"), width=320, height=240,
                                    loop=True, realtime=False))
    with src:
        frames = [src.read() for _ in range(12)]
    assert all(f.image.shape == (240, 320, 3) for f in frames)


def test_missing_files_and_cameras_give_clear_errors(tmp_path):
    with pytest.raises(SourceError, match="video file not found"):
        make_source(SourceSection(type="video", uri=str(tmp_path / "nope.mp4"))).open()
    with pytest.raises(SourceError, match="image folder not found"):
        make_source(SourceSection(type="images", uri=str(tmp_path / "nodir"))).open()
    with pytest.raises(SourceError, match="cannot open camera"):
        make_source(SourceSection(type="camera", uri="/dev/video99")).open()
    with pytest.raises(ValueError, match="uri is empty for type = 'rtsp'"):  # a config error now, naming the fix
        SourceSection(type="rtsp", uri="")


def test_image_folder_skips_unreadable_files(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((50, 80, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(tmp_path / "c.png"), np.full((50, 80, 3), 255, np.uint8))
    src = make_source(SourceSection(type="images", uri=str(tmp_path), width=160, height=100, loop=False,
                                    realtime=False))
    with src:
        frames = list(src.frames())
    assert [f.meta["path"].rsplit("/", 1)[1] for f in frames] == ["a.png", "c.png"]
    assert frames[0].image.shape == (100, 160, 3)


def test_demo_source_has_people_and_empty_gaps():
    src = DemoSource("mirror", fps=10, seconds_per_person=1.0, gap_seconds=0.5, loop=False, realtime=False)
    with src:
        frames = list(src.frames())
    assert len(frames) == 3 * 15
    person, empty = frames[3].image, frames[12].image
    assert np.abs(person.astype(int) - empty.astype(int)).mean() > 20  # a photo, not the plain background


class FlakyCamera(FrameSource):
    """Behaves like a USB camera that is unplugged after 3 frames and comes back later."""

    name = "flaky"

    def __init__(self):
        self.opens = 0
        self.n = 0

    def open(self):
        self.opens += 1
        if self.opens == 2:
            raise SourceError("camera /dev/video0 not present")

    def read(self):
        from edge.core.frames import Frame

        self.n += 1
        if self.n == 4:
            raise SourceError("camera stopped delivering frames")
        time.sleep(0.005)
        return Frame(np.zeros((4, 4, 3), np.uint8), self.n, time.monotonic(), time.time(), "flaky")


def test_reader_survives_unplug_and_reconnects():
    cam = FlakyCamera()
    reader = LatestFrameReader(cam, reconnect_s=0.05).start()
    try:
        seqs = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (not seqs or seqs[-1] < 10):
            f = reader.get(timeout=1)
            if f is not None:
                seqs.append(f.seq)
        assert seqs[-1] >= 10  # frames flow again after the camera came back
        assert cam.opens >= 3  # initial open, failed reopen, successful reopen
        assert reader.error is None
    finally:
        reader.stop()


def test_reader_keeps_only_the_newest_frame():
    src = DemoSource("mirror", width=64, height=48, fps=1000, loop=True, realtime=False)
    reader = LatestFrameReader(src).start()
    try:
        a = reader.get(timeout=5)
        time.sleep(0.2)  # consumer is slow: the reader must drop, not queue
        b = reader.get(timeout=5)
        assert b.seq > a.seq + 1
        assert reader.dropped > 0
    finally:
        reader.stop()


def test_reader_without_drop_hands_over_every_frame():
    src = DemoSource("mirror", width=64, height=48, fps=1000, loop=False, realtime=False, seconds_per_person=0.01,
                     gap_seconds=0.01)
    reader = LatestFrameReader(src, drop=False).start()
    try:
        seqs = []
        while (f := reader.get(timeout=5)) is not None:
            seqs.append(f.seq)
            time.sleep(0.002)  # slow consumer
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) == 3 * 20
        assert reader.dropped == 0
    finally:
        reader.stop()


def test_rtsp_stream_that_never_answers_is_lost_within_the_timeout_and_the_reader_stops():
    """A camera that accepts the connection and then says nothing (hung encoder, half-dead switch) is reported lost
    after RTSP_TIMEOUT_S (before: OpenCV's FFmpeg default of 30 s, the reader thread unstoppable meanwhile)."""
    import socket
    import threading

    from edge.sources.opencv_capture import RTSP_TIMEOUT_S

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    held = []  # accepted connections, kept open and silent
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(4)], daemon=True).start()
    src = make_source(SourceSection(type="rtsp", uri=f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam"))
    reader = LatestFrameReader(src, reconnect_s=60).start()
    try:
        deadline = time.monotonic() + 3 * RTSP_TIMEOUT_S
        while reader.error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.error is not None and "cannot open rtsp" in reader.error
    finally:
        reader.stop()
        srv.close()
        for conn, _ in held:
            conn.close()
    assert not reader._thread.is_alive()


def test_a_reconnect_whose_open_hangs_stops_counting_as_a_lost_source():
    """lost() (the watchdog's "source lost, reconnecting: not a stall") holds while reconnect attempts come and go,
    but not for an open() stuck longer than hang_s: a driver that hangs is a stall after all."""
    import socket
    import threading

    from edge.sources.opencv_capture import RTSP_TIMEOUT_S

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []  # accepted connections, kept open and silent: every open() takes RTSP_TIMEOUT_S
    threading.Thread(target=lambda: [held.append(srv.accept()) for _ in range(8)], daemon=True).start()
    src = make_source(SourceSection(type="rtsp", uri=f"rtsp://127.0.0.1:{srv.getsockname()[1]}/cam"))
    reader = LatestFrameReader(src, reconnect_s=0.1).start()
    try:
        assert wait_until(lambda: reader.error is not None, 3 * RTSP_TIMEOUT_S)
        assert reader.lost() == reader.error  # lost and reconnecting: not a hang
        # the next open() hangs for RTSP_TIMEOUT_S: past hang_s = 1 s it is a stall, not a lost source
        assert wait_until(lambda: reader.lost(hang_s=1.0) is None, 2 * RTSP_TIMEOUT_S)
        assert reader.lost(hang_s=60.0) == reader.error
    finally:
        reader.stop()
        srv.close()
        for conn, _ in held:
            conn.close()


def test_stopping_a_reader_wakes_a_read_waiting_for_its_due_time(tmp_path):
    """Real-time playback of a slow slide show (one image every 20 s): stop() ends the paced wait, so the reader
    thread is joined and the source closed (before: it slept on, past stop()'s join)."""
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((48, 64, 3), np.uint8))
    src = make_source(SourceSection(type="images", uri=str(tmp_path), width=64, height=64, fps=0.05, realtime=True))
    reader = LatestFrameReader(src).start()
    try:
        assert reader.get(timeout=5).meta["path"].endswith("a.png")
    finally:
        reader.stop()
    assert not reader._thread.is_alive()


def test_reopened_image_folder_goes_on_after_the_last_image(tmp_path):
    """The reader reopens a lost source (close, open): a folder goes on with the next image, on the same clock,
    instead of playing everything again (duplicate frames, events and counts)."""
    for i, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        cv2.imwrite(str(tmp_path / name), np.full((48, 64, 3), 50 * i, np.uint8))
    src = make_source(SourceSection(type="images", uri=str(tmp_path), width=64, height=64, fps=10, loop=False,
                                    realtime=False))
    src.open()
    first = [src.read(), src.read()]
    src.close()
    src.open()  # what LatestFrameReader does after an error
    rest = list(src.frames())
    names = [f.meta["path"].rsplit("/", 1)[1] for f in first + rest]
    assert names == ["a.png", "b.png", "c.png", "d.png"]
    assert [f.t for f in first + rest] == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_reopened_video_goes_on_where_it_was(tmp_path):
    write_video(tmp_path / "v.avi", n=6)
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "v.avi"), width=160, height=120,
                                    loop=False, realtime=False))
    src.open()
    first = [src.read() for _ in range(3)]
    src.close()
    src.open()
    rest = list(src.frames())
    src.close()
    assert [round(float(f.image.mean()) / 20) for f in first + rest] == [0, 1, 2, 3, 4, 5]  # each frame once
    assert [f.t for f in first + rest] == pytest.approx([i / 30 for i in range(6)])


def test_a_stretched_video_is_named_once_with_the_fix(tmp_path, caplog):
    """A 16:9 file on the default 4:3 source is stretched (people look thinner, pose accuracy drops): said once,
    with the fix; a file of the configured aspect, only scaled, says nothing."""
    write_video(tmp_path / "wide.avi", n=4, size=(192, 108))
    write_video(tmp_path / "same.avi", n=4, size=(320, 240))
    with caplog.at_level("WARNING", logger="edge.sources.opencv_capture"):
        for name in ("wide.avi", "same.avi"):
            with make_source(SourceSection(type="video", uri=str(tmp_path / name), width=160, height=120,
                                           loop=False, realtime=False)) as src:
                assert all(f.image.shape == (120, 160, 3) for f in src.frames())
    warned = [r.getMessage() for r in caplog.records if "stretched" in r.getMessage()]
    assert len(warned) == 1 and "wide.avi gives 192x108 frames" in warned[0]
    assert "set [source] width and height" in warned[0]
