"""`edge bench gestures` writes its keys (a short landmark-level run on the real hands' templates), with the
swatches placed inside a portrait screen's view: the scripted pointing lands on them and is recognised."""
from __future__ import annotations

import argparse
import json


def test_bench_gestures_writes_its_keys_with_a_portrait_view(hand_zoo, tmp_path):
    from devtools.bench import gestures

    p = argparse.ArgumentParser()
    gestures.add_arguments(p)
    out = tmp_path / "gestures.json"
    args = p.parse_args(["--sequences", "3", "--normal-minutes", "0.3", "--e2e-sequences", "0", "--fps", "30",
                         "--view", "0.29,0.05,0.71,0.75"])
    args.json = str(out)
    assert gestures.run(args) == 0
    res = json.loads(out.read_text())
    assert res["view"] == [0.29, 0.05, 0.71, 0.75]
    for key in ("gesture_precision", "gesture_recall", "latency_ms_p50", "latency_ms_p95", "false_triggers_per_min"):
        assert isinstance(res[key], (int, float)), key
    point = res["per_gesture"]["point"]
    assert point["n"] == 3 and point["recall"] == 1.0, point  # the swatches moved into the view, and so did the hand
    assert set(res["per_gesture"]) == {"swipe_left", "swipe_right", "point", "palm"}
