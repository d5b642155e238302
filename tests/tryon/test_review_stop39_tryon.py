"""Try-on sessions at a hand-over between two shoppers (stop 39 review)."""
from __future__ import annotations

import dataclasses
import time

import numpy as np

from devtools.mannequin import render_person
from edge.core.events import ListSink
from edge.core.frames import Frame
from edge.pose.types import PersonPose, PoseResult
from edge.tryon.config import TryOnConfig
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.pipeline import TryOnPipeline


def _run(pipe: TryOnPipeline, image: np.ndarray, seq: int, people: list[PersonPose]) -> None:
    t = seq / 10
    pipe.run_sync(Frame(image.copy(), seq, time.monotonic(), time.time(), "test", t_media=t),
                  PoseResult(frame_seq=seq, t=t, image_size=image.shape[:2], people=people))


def _sessions(sink: ListSink) -> list[tuple[str, float, str]]:
    return [(e.data["sku"], e.data["duration_s"], e.data["end_reason"]) for e in sink.events
            if e.kind == "tryon_session"]


def _two_people(intr: Intrinsics):
    a = render_person(intr, x_offset=-0.45)
    b = render_person(intr, x_offset=0.45, bg=a.image)
    return b.image, a.person_pose(), dataclasses.replace(b.person_pose(), track_id=2)


def test_a_shopper_who_takes_over_from_the_last_one_starts_a_new_session(catalog, intr):
    """A tries the tee for 2 s with B beside them, then A steps out and B (in view all along) steps up for 2 s:
    two sessions, A's ending where A was last seen. Before, B's 2 s were counted as A's (one 4 s session): the
    store's dwell per shopper and sessions per garment were wrong wherever shoppers queue at the mirror."""
    image, pa, pb = _two_people(intr)
    sink = ListSink()
    pipe = TryOnPipeline(TryOnConfig(), [], None, sink=sink, catalog=catalog)
    try:
        for k in range(21):
            _run(pipe, image, k, [pa, pb])
        for k in range(21, 42):
            _run(pipe, image, k, [pb])
        pipe.sessions.close()
    finally:
        pipe.close_sync()
    sku = pipe.selection[0]
    assert _sessions(sink) == [(sku, 2.0, "shopper_changed"), (sku, 2.0, "stopped")]


def test_the_same_shopper_found_again_under_a_new_track_keeps_the_session(catalog, intr):
    """The pose loses the shopper (turning away) and finds them again with a new track id, nobody else in view: the
    session goes on (one 4 s session), it is not cut in two at every pose drop-out."""
    image, pa, _ = _two_people(intr)
    sink = ListSink()
    pipe = TryOnPipeline(TryOnConfig(), [], None, sink=sink, catalog=catalog)
    try:
        for k in range(21):
            _run(pipe, image, k, [pa])
        _run(pipe, image, 21, [])
        for k in range(22, 41):
            _run(pipe, image, k, [dataclasses.replace(pa, track_id=7)])
        pipe.sessions.close()
    finally:
        pipe.close_sync()
    assert _sessions(sink) == [(pipe.selection[0], 4.0, "stopped")]
