"""Ground truth of the scripted store scene (devtools/scenario_truth.py) for the behaviour benchmark: the scripted
reach really puts a wrist in the shelf, and interactions follow ShelfInteraction's start and release rule."""
from __future__ import annotations

from devtools import scenario, scenario_truth


def _scene(*actors: scenario.Actor, duration_s: float) -> scenario.Scenario:
    return scenario.Scenario(list(actors), duration_s, scenario.load_sprites())


def test_the_scripted_reach_puts_a_wrist_in_the_shelf():
    """Cycle 0's shelf shopper stands at (585, 330) for 6 s: a wrist inside SHELF all along."""
    sc = scenario.build(cycles=1)
    (shopper,) = [a for a in sc.actors if a.role == "shelf"]
    (t0, *_), (t1, *_) = shopper.keys[1:3]  # arrives, leaves
    assert t1 - t0 == 6.0
    for t in (t0 + 0.1, (t0 + t1) / 2, t1 - 0.1):
        (p,) = [p for p in sc.truth(round(t * sc.fps)).people if p.id == shopper.id]
        assert p.foot == (585.0, 330.0)
        assert any(scenario_truth.inside(scenario.SHELF, w) for w in p.wrists)


def test_interactions_start_after_three_frames_and_end_after_three_without():
    """Sprite 3 standing at (585, 330) has its right wrist in the shelf. Person 1 stands there 0-1 s, steps out of
    reach (x 520) for 2 frames, comes back: one interaction (2 frames out do not end it). Person 2 reaches for 2
    frames only: none. Person 1 then leaves for 1 s and reaches again: a second one."""
    fps = scenario.FPS
    one = scenario.Actor(1, 3, [(0.0, 585, 330), (1.0, 585, 330), (1.0 + 1 / fps, 520, 330),
                                (1.0 + 2 / fps, 520, 330), (1.0 + 3 / fps, 585, 330), (2.0, 585, 330),
                                (2.0 + 1 / fps, 450, 330), (3.0, 450, 330), (3.0 + 1 / fps, 585, 330),
                                (4.0, 585, 330)])
    two = scenario.Actor(2, 3, [(5.0, 585, 330), (5.0 + 1 / fps, 585, 330), (5.0 + 2 / fps, 450, 330),
                                (6.0, 450, 330)])
    truth = scenario_truth.compute(_scene(one, two, duration_s=6.0), {})
    assert [(pid, round(t, 1)) for pid, t in truth.interactions] == [(1, 0.0), (1, 3.1)]
