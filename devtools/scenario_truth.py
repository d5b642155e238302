"""Ground truth of the scripted store scene (devtools.scenario) under the analytics' own definitions: foot point
(box bottom centre) in a polygon for zones and queues, a foot path crossing the door segment for footfall, a
wrist in the shelf polygon for interactions, and the alert rules evaluated on the true values."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from devtools.scenario import LINE, SHELF, ZONES, Scenario, TrueFrame


def inside(poly, pt) -> bool:
    """Point in polygon (even-odd rule)."""
    x, y = pt
    n, c = len(poly), False
    for i in range(n):
        (x1, y1), (x2, y2) = poly[i], poly[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            c = not c
    return c


def _side(p) -> float:
    (ax, ay), (bx, by) = LINE
    return (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)


def _crosses_segment(p0, p1) -> bool:
    """The step p0 -> p1 crosses the door line at a point inside the segment."""
    (ax, ay), (bx, by) = LINE
    d0, d1 = _side(p0), _side(p1)
    if d0 == 0 or d1 == 0 or (d0 > 0) == (d1 > 0):
        return False
    u = d0 / (d0 - d1)
    x, y = p0[0] + u * (p1[0] - p0[0]), p0[1] + u * (p1[1] - p0[1])
    v = ((x - ax) * (bx - ax) + (y - ay) * (by - ay)) / ((bx - ax) ** 2 + (by - ay) ** 2)
    return 0.0 <= v <= 1.0


@dataclass
class Truth:
    frames: list[TrueFrame]
    fps: float
    footfall: dict[str, int] = field(default_factory=lambda: {"in": 0, "out": 0})
    crossings: list[tuple[float, int, str]] = field(default_factory=list)  # (t, id, "in" | "out") at the door
    visits: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)  # zone -> (id, t_in, t_out)
    queue_len: list[int] = field(default_factory=list)
    interactions: list[tuple[int, float]] = field(default_factory=list)  # (id, start t)
    alerts: list[tuple[str, float]] = field(default_factory=list)  # (rule id, onset t)


def compute(sc: Scenario, rules: dict[str, dict], *, interaction_frames: int = 3, release_frames: int = 3) -> Truth:
    """Truth of the whole scene; `rules` maps rule id -> {"kind": "queue"|"dwell", "zone", "threshold", "for_s"}
    ("queue": people in zone >= threshold for for_s; "dwell": one person in zone for >= threshold seconds).
    Interactions as edge.analytics.shelf.ShelfInteraction defines them: a wrist in the shelf polygon for
    `interaction_frames` consecutive frames starts one, `release_frames` frames without (or absent) end it."""
    frames = [sc.truth(i) for i in range(sc.n_frames)]
    tr = Truth(frames, sc.fps, visits={z: [] for z in ZONES})
    last_foot: dict[int, tuple[float, float]] = {}
    open_visit: dict[tuple[str, int], float] = {}
    reach: dict[int, list] = {}  # id -> [frames inside, frames outside, active]
    for f in frames:
        ids, hands = set(), set()
        for p in f.people:
            ids.add(p.id)
            if p.id in last_foot and _crosses_segment(last_foot[p.id], p.foot):
                direction = "in" if _side(p.foot) > 0 else "out"
                tr.footfall[direction] += 1
                tr.crossings.append((f.t, p.id, direction))
            last_foot[p.id] = p.foot
            for z, poly in ZONES.items():
                key = (z, p.id)
                if inside(poly, p.foot):
                    open_visit.setdefault(key, f.t)
                elif key in open_visit:
                    tr.visits[z].append((p.id, open_visit.pop(key), f.t))
            if any(inside(SHELF, w) for w in p.wrists):
                hands.add(p.id)
                r = reach.setdefault(p.id, [0, 0, False])
                r[0], r[1] = r[0] + 1, 0
                if not r[2] and r[0] >= interaction_frames:
                    r[2] = True
                    tr.interactions.append((p.id, f.t - (r[0] - 1) / sc.fps))
        for pid in [k for k in reach if k not in hands]:  # no wrist inside (or absent): ends after release_frames
            r = reach[pid]
            r[0], r[1] = 0, r[1] + 1
            if not r[2] or r[1] >= release_frames:
                del reach[pid]
        for key in [k for k in open_visit if k[1] not in ids]:  # left the frame
            tr.visits[key[0]].append((key[1], open_visit.pop(key), f.t))
        tr.queue_len.append(sum(inside(ZONES["checkout"], p.foot) for p in f.people))
    for (z, pid), t0 in open_visit.items():
        tr.visits[z].append((pid, t0, frames[-1].t))
    tr.alerts = sorted(_alerts(tr, rules))
    return tr


def _alerts(tr: Truth, rules: dict[str, dict]) -> list[tuple[str, float]]:
    out = []
    for rid, r in rules.items():
        if r["kind"] == "queue":
            held_since = None
            fired = False
            for i, n in enumerate(tr.queue_len):
                t = i / tr.fps
                if n >= r["threshold"]:
                    held_since = t if held_since is None else held_since
                    if not fired and t - held_since >= r["for_s"]:
                        out.append((rid, t))
                        fired = True
                else:
                    held_since, fired = None, False
        else:  # one person's visit reaching the dwell threshold
            for _, t_in, t_out in tr.visits[r["zone"]]:
                if t_out - t_in >= r["threshold"]:
                    out.append((rid, t_in + r["threshold"]))
    return out


def id_switches(gt_frames: list[TrueFrame], pred: list[tuple[np.ndarray, np.ndarray]], iou_min: float = 0.5,
                min_visible: float = 0.5) -> int:
    """Times a true person's matched track id changes (CLEAR-MOT style, over frames where the person is at least
    `min_visible` visible and matched to a confirmed track by IoU >= iou_min). pred[i] = (boxes, ids)."""
    from edge.core.detections import box_iou

    last: dict[int, int] = {}
    switches = 0
    for f, (boxes, ids) in zip(gt_frames, pred):
        people = [p for p in f.people if p.visible >= min_visible]
        if not people or len(boxes) == 0:
            continue
        iou = box_iou(np.array([p.box for p in people], np.float32), boxes)
        used = set()
        for flat in np.argsort(-iou, axis=None):
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < iou_min:
                break
            if j in used or ids[j] < 0:
                continue
            used.add(j)
            pid, tid = people[i].id, int(ids[j])
            if pid in last and last[pid] != tid:
                switches += 1
            last[pid] = tid
            iou[i, :] = -1
    return switches
