"""`edge bench behaviour` scores zone handovers against the scene's truth (devtools/bench/behaviour.py
`_handovers`): right when the person the old track followed where it came nearest the new track's first box is
the person the new track follows."""
from __future__ import annotations

import numpy as np

from devtools.bench.behaviour import _handovers
from devtools.scenario import TrueFrame, TruePerson
from devtools.scenario_truth import Truth
from edge.analytics.base import make_event
from edge.core.events import ListSink

FPS = 10.0
A, B = (100.0, 100.0, 120.0, 170.0), (300.0, 100.0, 320.0, 170.0)  # person 1 stands, person 2 stands elsewhere


def _person(pid: int, box) -> TruePerson:
    return TruePerson(pid, box, ((box[0] + box[2]) / 2, box[3]), np.zeros((2, 2)), 1.0)


def test_a_handover_is_right_only_when_both_tracks_follow_the_same_person():
    """Track 5 follows person 1 for 2 s and is gone; track 9 follows them from 2.5 s (right). Track 7 follows
    person 2 throughout; track 9's visit handed to it at 4 s would be wrong."""
    truth = Truth([TrueFrame(i, i / FPS, [_person(1, A), _person(2, B)]) for i in range(60)], FPS)
    tracks = []
    for i in range(60):
        boxes, ids = [B], [7]
        if i < 20:
            boxes, ids = [A, *boxes], [5, *ids]
        elif i >= 25:
            boxes, ids = [A, *boxes], [9, *ids]
        tracks.append((np.array(boxes, np.float32), np.array(ids, np.int64)))
    sink = ListSink()
    for t, old, new in ((2.5, 5, 9), (4.0, 9, 7)):
        sink.emit(make_event("zone_entered", {"zone": "window", "track_id": new, "enter_t": 0.0, "continues": old},
                             t, None, "bench"))
    sink.emit(make_event("zone_entered", {"zone": "window", "track_id": 7, "enter_t": 0.0}, 0.0, None, "bench"))
    out = _handovers(truth, sink, tracks, FPS)
    assert (out["handovers"], out["handovers_right"]) == (2, 1)
    right, wrong = out["handover_list"]
    assert (right["from"], right["to"], right["person_from"], right["person_to"], right["same_person"]) == \
        (5, 9, 1, 1, True)
    assert (wrong["person_from"], wrong["person_to"], wrong["same_person"]) == (1, 2, False)
