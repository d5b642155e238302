"""Second look (round 40) at the frame sources: a looped MPEG-TS clip, image folders numbered without zero padding, a
broken image in a looped folder, and a source that opens but fails every read."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np
import pytest

from edge.app.config import SourceSection
from edge.core.frames import Frame
from edge.sources import LatestFrameReader, SourceError, make_source
from edge.sources.base import FrameSource


def write_video(path, n: int, fps: float, fourcc: str, size=(160, 120)) -> None:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert vw.isOpened(), f"OpenCV cannot write {path}"
    for i in range(n):
        vw.write(np.full((size[1], size[0], 3), 20 + i * 20, np.uint8))
    vw.release()


def test_a_looped_mpeg_ts_clip_plays_every_frame_of_each_pass(tmp_path):
    """An NVR export (MPEG-TS) played in a loop: each pass starts at the clip's first frame and its media time goes
    on one frame period per frame (before: the loop seeked to frame 0, which in a TS file lands a few frames in, so
    every pass after the first skipped its first frames and the media time jumped 0.4 s at each loop)."""
    write_video(tmp_path / "clip.ts", 10, 10, "mpg2")
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "clip.ts"), width=160, height=120, loop=True,
                                    realtime=False, start_time="now"))
    with src:
        frames = [src.read() for _ in range(30)]
    means = [float(f.image.mean()) for f in frames]
    first = means[:10]
    for k in (1, 2):
        assert means[10 * k:10 * (k + 1)] == pytest.approx(first, abs=8), (k, means)
    assert [f.t for f in frames] == pytest.approx([i / 10 for i in range(30)], abs=1e-3)


def test_a_looped_clip_whose_file_went_away_is_lost_not_ended(tmp_path):
    """The looped file is deleted (a USB stick pulled) while it plays: at the end of the pass the source says it
    is lost (the reader reconnects and reports it), not that the clip ended for good."""
    write_video(tmp_path / "v.avi", 3, 10, "MJPG")
    src = make_source(SourceSection(type="video", uri=str(tmp_path / "v.avi"), width=160, height=120, loop=True,
                                    realtime=False))
    with src:
        assert src.read() is not None
        (tmp_path / "v.avi").unlink()
        with pytest.raises(SourceError, match="v.avi"):
            for _ in range(5):
                assert src.read() is not None


def _numbered_folder(folder, n: int) -> None:
    for i in range(1, n + 1):  # snapshot_1.jpg ... snapshot_12.jpg: numbered without zero padding
        cv2.imwrite(str(folder / f"snapshot_{i}.png"), np.full((48, 64, 3), i * 10, np.uint8))


def test_an_image_folder_numbered_without_padding_plays_in_number_order(tmp_path):
    """snapshot_1 ... snapshot_12 play 1, 2, ..., 12 (before: by plain string order 1, 10, 11, 12, 2, ...: people
    jumped back and forth, tracks and dwell times broke). A reopen after a loss goes on after the last one taken."""
    _numbered_folder(tmp_path, 12)
    src = make_source(SourceSection(type="images", uri=str(tmp_path), width=64, height=64, fps=10, loop=False,
                                    realtime=False))
    src.open()
    first = [src.read() for _ in range(5)]
    src.close()
    src.open()  # what LatestFrameReader does after an error
    rest = list(src.frames())
    src.close()
    names = [f.meta["path"].rsplit("/", 1)[1] for f in first + rest]
    assert names == [f"snapshot_{i}.png" for i in range(1, 13)]


def test_a_broken_image_in_a_looped_folder_is_warned_about_once(tmp_path, caplog):
    """A looped folder with one unreadable file: it is skipped and said once (before: a warning on every pass, at
    30 FPS over a few images several lines a second into the journal, for as long as the device runs)."""
    for name in ("a.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((48, 64, 3), np.uint8))
    (tmp_path / "b.jpg").write_bytes(b"truncated upload")
    src = make_source(SourceSection(type="images", uri=str(tmp_path), width=64, height=64, fps=30, loop=True,
                                    realtime=False))
    with caplog.at_level("WARNING", logger="edge.sources.images"), src:
        names = [src.read().meta["path"].rsplit("/", 1)[1] for _ in range(20)]
    assert names == ["a.png", "c.png"] * 10
    warned = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warned) == 1 and "b.jpg" in warned[0], warned


class OpensButNeverDelivers(FrameSource):
    """A camera whose device node opens but whose every read fails (a USB camera in a bad state, a stream that
    connects and then drops)."""

    name = "cam"

    def __init__(self, good_after: int | None = None):
        self.opens = 0
        self.good_after = good_after

    def open(self) -> None:
        self.opens += 1

    def read(self) -> Frame | None:
        if self.good_after is not None and self.opens > self.good_after:
            time.sleep(0.002)
            return Frame(np.zeros((4, 4, 3), np.uint8), self.opens, time.monotonic(), time.time())
        raise SourceError("camera '0' stopped delivering frames")


def test_a_source_that_opens_but_fails_every_read_logs_its_error_once(caplog):
    """Before: each reconnect's successful open cleared the error, so the same failure was logged again at every
    retry (an ERROR line every reconnect_s, around the clock). It is logged once, and again after frames flowed."""
    src = OpensButNeverDelivers(good_after=20)
    with caplog.at_level("ERROR", logger="edge.sources.base"):
        reader = LatestFrameReader(src, reconnect_s=0.01).start()
        try:
            assert reader.get(timeout=10) is not None  # recovered after 20 failed reconnects
        finally:
            reader.stop()
    assert src.opens > 20
    logged = [r for r in caplog.records if "stopped delivering" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.ERROR


def test_macos_metadata_files_in_an_image_folder_are_not_frames(tmp_path):
    """A folder copied from a Mac onto a USB stick carries an AppleDouble file `._name.png` beside each image: they
    are not frames, so they take no time slot and are not warned about (before: each was an unreadable image whose
    empty slot pushed the real images' media time back, halving the folder's speed, with a warning per file)."""
    for name in ("a.png", "b.png", "c.png"):
        cv2.imwrite(str(tmp_path / name), np.zeros((48, 64, 3), np.uint8))
        (tmp_path / f"._{name}").write_bytes(b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        ")
    src = make_source(SourceSection(type="images", uri=str(tmp_path), width=64, height=64, fps=10, loop=False,
                                    realtime=False))
    with src:
        frames = list(src.frames())
    assert [f.meta["path"].rsplit("/", 1)[1] for f in frames] == ["a.png", "b.png", "c.png"]
    assert [f.t for f in frames] == pytest.approx([0.0, 0.1, 0.2])


def test_a_held_frame_of_a_file_played_as_fast_as_processed_is_stamped_when_handed_over(tmp_path):
    """With `realtime = false` the reader reads the next frame at once and holds it until the consumer takes it;
    it was stamped (t_capture) when read, so its latency included the whole previous frame's processing: every
    frame of a slow camera counted as late, and the scheduler (earliest deadline first) favoured such cameras."""
    import time as _time

    import cv2 as _cv2
    import numpy as _np

    from edge.sources.base import LatestFrameReader
    from edge.sources.images import ImageFolderSource

    for i in range(4):
        _cv2.imwrite(str(tmp_path / f"f{i}.png"), _np.full((48, 64, 3), 40 * i, _np.uint8))
    reader = LatestFrameReader(ImageFolderSource(str(tmp_path), fps=10, loop=False, realtime=False),
                               drop=False).start()
    try:
        assert reader.get(timeout=5) is not None
        _time.sleep(0.4)  # "processing" the first frame; the reader already holds the second
        f = reader.get(timeout=5)
        assert f is not None and _time.monotonic() - f.t_capture < 0.2
    finally:
        reader.stop()
