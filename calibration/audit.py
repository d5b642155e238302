"""Model audit measurement: accuracy of pose landmark models per group of people and conditions.

Samples: the people of the package photos (hand-annotated in calibration/audit_people.toml: visible attributes
only) cropped from their photos, and synthetic mannequin renders (one pose; skin tone, body size and clothing varied
one at a time), each under controlled variants: as shot, dim, overexposed, colour cast, far (shrunk), a bar over
the body. Every sample is compared with a reference (MediaPipe Pose): drift = mean landmark distance / torso size
over the landmarks the reference sees, and detection recall = share of the reference's detections of the subject
that the candidate also finds. Groups are compared within their source (photos or synthetic), so a synthetic-only
group is never compared with photos. Model runners, the reference, the renderer and the drift metric are passed in
(calibration never imports models.build or devtools).
"""
from __future__ import annotations

import math
import tomllib
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import cv2
import numpy as np
from pydantic import Field, ValidationError, field_validator, model_validator

from calibration.photos import BY_NAME, load_photo
from edge.core.config_base import StrictModel
from edge.pose.types import LM

TABLE = Path(__file__).with_name("audit_people.toml")
# Monk Skin Tone scale reference swatches (Google, CC-BY 4.0), as RGB hex
MONK = {1: "#f6ede4", 2: "#f3e7db", 3: "#f7ead0", 4: "#eadaba", 5: "#d7bd96", 6: "#a07e56", 7: "#825c43",
        8: "#604134", 9: "#3a312a", 10: "#292420"}
SHIRTS = {"light": (200, 200, 195), "dark": (45, 42, 40)}  # BGR
VARIANTS = ("original", "dim", "overexposed", "colour_cast", "far", "bar")
DIMENSIONS = ("skin_tone", "body_size", "clothing", "distance", "lighting", "occlusion")
SOURCES = ("photos", "synthetic")
DISTANCE = {"portrait": "near", "upper_body": "near", "three_quarter": "mid", "full_body": "mid"}
FRAME = (640, 480)  # canvas of the far variant (w, h)


class AuditTableError(ValueError):
    """The people table is invalid; the message names the file, the key and the fix."""


class AuditSettings(StrictModel):
    factor: float = Field(1.5, gt=1.0, description="flag factor over the overall mean, > 1")
    min_n: int = Field(3, ge=1, description="smallest group that can be flagged")
    min_drift_excess: float = Field(0.01, ge=0, description="drift above the overall mean needed to flag")
    min_miss_excess: float = Field(0.1, ge=0, le=1, description="miss rate above the overall one needed to flag")
    crop_margin: float = Field(0.2, ge=0, le=1)
    far_height: float = Field(0.35, gt=0.05, le=1)
    bar: tuple[float, float] = (0.5, 0.62)

    @field_validator("bar")
    @classmethod
    def _bar(cls, v):
        if not 0 <= v[0] < v[1] <= 1:
            raise ValueError("bar must be [top, bottom] fractions of the box height with 0 <= top < bottom <= 1")
        return v


class PersonEntry(StrictModel):
    id: str
    photo: str
    box: tuple[int, int, int, int]
    shoulders: tuple[float, float]
    skin_tone: Literal["light", "medium", "dark", "unknown"]
    body_size: Literal["slim", "average", "large", "unknown"]
    clothing: Literal["dark", "mid", "light"]
    clothing_note: str = ""
    framing: Literal["portrait", "upper_body", "three_quarter", "full_body"]
    occlusion: Literal["none", "natural"]
    note: str = ""

    @field_validator("photo")
    @classmethod
    def _photo(cls, v):
        if v not in BY_NAME:
            raise ValueError(f"unknown photo {v!r}; one of {sorted(BY_NAME)} (calibration/photos.py)")
        return v

    @model_validator(mode="after")
    def _geometry(self):
        x0, y0, x1, y1 = self.box
        if not (x0 < x1 and y0 < y1):
            raise ValueError(f"box {list(self.box)} must be [x0, y0, x1, y1] with x0 < x1 and y0 < y1")
        return self


class SyntheticGrid(StrictModel):
    monk: list[int] = Field(default_factory=list, description="Monk scale steps 1-10")
    girth: list[float] = [1.0]
    shirt: list[Literal["light", "dark"]] = ["light"]
    yaw_deg: float = 20.0
    distance_m: float = Field(2.4, gt=0.5)

    @field_validator("monk")
    @classmethod
    def _monk(cls, v):
        bad = [m for m in v if m not in MONK]
        if bad:
            raise ValueError(f"Monk steps {bad} are not 1-10")
        return v


class AuditTable(StrictModel):
    settings: AuditSettings = AuditSettings()
    people: list[PersonEntry]
    synthetic: SyntheticGrid = SyntheticGrid()

    @model_validator(mode="after")
    def _unique(self):
        ids = [p.id for p in self.people]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"people ids {dup} appear more than once; give each person its own id")
        return self


def load_table(path: Path = TABLE) -> AuditTable:
    """The people table; AuditTableError naming the file, key and fix on bad input."""
    try:
        data = tomllib.loads(Path(path).read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise AuditTableError(f"{path}: cannot read the audit table: {e} (fix: valid TOML, see the header)") from e
    try:
        return AuditTable.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = err["loc"]
            key = ".".join(f"[{x}]" if isinstance(x, int) else str(x) for x in loc).replace(".[", "[")
            if loc and loc[0] == "people" and len(loc) > 1 and isinstance(loc[1], int) \
                    and isinstance(data.get("people"), list) and loc[1] < len(data["people"]):
                key += f" (id {data['people'][loc[1]].get('id', '?')!r})"
            fix = "remove the key" if err["type"] == "extra_forbidden" else "see the comments at the top of the file"
            problems.append(f"{key or '<top>'}: {err['msg']} (fix: {fix})")
        raise AuditTableError(f"{path}: " + "; ".join(problems)) from e


def monk_bucket(step: int) -> str:
    return "light" if step <= 3 else "medium" if step <= 6 else "dark"


def monk_bgr(step: int) -> tuple[int, int, int]:
    h = MONK[step].lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return b, g, r


@dataclass
class Sample:
    """One image the candidates and the reference see, with the subject's annotation in its coordinates."""

    subject: str
    source: str  # "photos" | "synthetic"
    variant: str
    image: np.ndarray  # BGR uint8
    box: np.ndarray  # (4,) x0 y0 x1 y1 of the subject
    shoulders: np.ndarray  # (2,) the subject's mid-shoulder point
    others: np.ndarray  # (k, 2) mid-shoulder points of the other annotated people in view
    attrs: dict[str, str]
    truth: np.ndarray | None = None  # (33, 5) exact landmarks of a synthetic render

    @property
    def key(self) -> str:
        return f"{self.subject}@{self.variant}"


@dataclass
class Rendered:
    """What the renderer returns for a synthetic subject."""

    image: np.ndarray  # BGR
    mask: np.ndarray  # HxW, > 0.5 on the body
    landmarks: np.ndarray  # (33, 5) px x, y, z, visibility, presence


def _mid_shoulder(lm: np.ndarray) -> np.ndarray:
    return (lm[LM["left_shoulder"], :2] + lm[LM["right_shoulder"], :2]) / 2


def _photo_subjects(table: AuditTable, cache: Path | None, ids: set[str] | None) -> list[Sample]:
    out = []
    m = table.settings.crop_margin
    for p in table.people:
        if ids is not None and p.id not in ids and p.photo not in ids:
            continue
        img = load_photo(p.photo, cache)
        h, w = img.shape[:2]
        x0, y0, x1, y1 = p.box
        if x1 > w + 1 or y1 > h + 1:
            raise AuditTableError(f"{TABLE}: people id {p.id!r}: box {list(p.box)} is outside the {w}x{h} photo "
                                  f"{p.photo!r} (fix: annotate it in photo pixels)")
        bw, bh = x1 - x0, y1 - y0
        cx0, cy0 = max(0, int(x0 - m * bw)), max(0, int(y0 - m * bh))
        cx1, cy1 = min(w, int(math.ceil(x1 + m * bw))), min(h, int(math.ceil(y1 + m * bh)))
        off = np.array([cx0, cy0], float)
        others = [np.asarray(q.shoulders, float) - off for q in table.people if q.photo == p.photo and q.id != p.id]
        others = [o for o in others if 0 <= o[0] < cx1 - cx0 and 0 <= o[1] < cy1 - cy0]
        attrs = {"skin_tone": p.skin_tone, "body_size": p.body_size, "clothing": p.clothing,
                 "distance": DISTANCE[p.framing], "lighting": "as shot", "occlusion": p.occlusion}
        out.append(Sample(p.id, "photos", "original", np.ascontiguousarray(img[cy0:cy1, cx0:cx1]),
                          np.array([x0 - cx0, y0 - cy0, x1 - cx0, y1 - cy0], float),
                          np.asarray(p.shoulders, float) - off, np.array(others, float).reshape(-1, 2), attrs))
    return out


def synthetic_specs(grid: SyntheticGrid) -> list[dict]:
    """Every combination of the grid: {id, monk, girth, shirt, yaw_deg, distance_m, skin_bgr, shirt_bgr}."""
    return [{"id": f"synthetic/monk{k}-g{g:g}-{s}", "monk": k, "girth": g, "shirt": s, "yaw_deg": grid.yaw_deg,
             "distance_m": grid.distance_m, "skin_bgr": monk_bgr(k), "shirt_bgr": SHIRTS[s]}
            for k in grid.monk for g in grid.girth for s in grid.shirt]


def _synthetic_subjects(table: AuditTable, render: Callable[[dict], Rendered]) -> list[Sample]:
    out = []
    for spec in synthetic_specs(table.synthetic):
        r = render(spec)
        ys, xs = np.nonzero(r.mask > 0.5)
        if not len(xs):
            raise ValueError(f"synthetic subject {spec['id']} rendered nothing in view")
        box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)
        attrs = {"skin_tone": monk_bucket(spec["monk"]), "body_size": "large" if spec["girth"] >= 1.3 else "average",
                 "clothing": spec["shirt"], "distance": "mid", "lighting": "as shot", "occlusion": "none"}
        out.append(Sample(spec["id"], "synthetic", "original", r.image, box, _mid_shoulder(r.landmarks),
                          np.zeros((0, 2)), attrs, truth=np.asarray(r.landmarks, float)))
    return out


def _points(s: Sample, scale: float, off: np.ndarray) -> dict:
    """Annotation of s after img' = img * scale + off."""
    truth = None
    if s.truth is not None:
        truth = s.truth.copy()
        truth[:, :3] *= scale
        truth[:, :2] += off
    return {"box": s.box * scale + np.tile(off, 2), "shoulders": s.shoulders * scale + off,
            "others": s.others * scale + off, "truth": truth}


def make_variant(s: Sample, variant: str, settings: AuditSettings) -> Sample:
    """The sample under one controlled condition (deterministic)."""
    img = s.image.astype(np.float32)
    attrs = dict(s.attrs)
    geo = {"box": s.box, "shoulders": s.shoulders, "others": s.others, "truth": s.truth}
    if variant == "original":
        return s
    if variant == "dim":  # a dark shop corner: 40 % of the light, sensor noise, as an auto-exposure would not fix
        rng = np.random.default_rng(zlib.crc32(s.subject.encode()))
        out = img * 0.4 + rng.normal(0, 2.0, img.shape)
        attrs["lighting"] = "dim"
    elif variant == "overexposed":  # a shop window behind the camera: blown-out highlights
        out = img * 1.45 + 10
        attrs["lighting"] = "overexposed"
    elif variant == "colour_cast":  # warm tungsten / sodium-like light: strong orange cast
        out = img * np.array([0.55, 0.85, 1.15], np.float32)
        attrs["lighting"] = "colour cast"
    elif variant == "far":  # the person at ~3x the distance: box shrunk to far_height of a 640x480 frame
        fw, fh = FRAME
        bh = s.box[3] - s.box[1]
        scale = settings.far_height * fh / bh
        h, w = s.image.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        if nw > fw or nh > fh:  # a wide crop: shrink further to fit the frame
            k = min(fw / nw, fh / nh)
            scale, nw, nh = scale * k, max(1, int(nw * k)), max(1, int(nh * k))
        small = cv2.resize(s.image, (nw, nh), interpolation=cv2.INTER_AREA)
        canvas = cv2.GaussianBlur(cv2.resize(s.image, (fw, fh), interpolation=cv2.INTER_AREA), (0, 0), 25)
        ox, oy = (fw - nw) // 2, fh - nh - (fh - nh) // 4  # on the floor line, a little above the bottom
        canvas[oy:oy + nh, ox:ox + nw] = small
        geo = _points(s, scale, np.array([ox, oy], float))
        attrs["distance"] = "far"
        out = canvas.astype(np.float32)
    elif variant == "bar":  # a shelf or a passer-by's arm across the body
        x0, y0, x1, y1 = s.box
        t, b = settings.bar
        out = img.copy()
        ya, yb = int(y0 + t * (y1 - y0)), int(math.ceil(y0 + b * (y1 - y0)))
        out[ya:yb, max(0, int(x0 - 0.1 * (x1 - x0))):int(math.ceil(x1 + 0.1 * (x1 - x0)))] = (60, 75, 95)
        attrs["occlusion"] = "bar"
    else:
        raise ValueError(f"unknown variant {variant!r}; one of {VARIANTS}")
    return Sample(s.subject, s.source, variant, np.clip(out, 0, 255).astype(np.uint8), geo["box"], geo["shoulders"],
                  geo["others"], attrs, geo["truth"])


def build_samples(table: AuditTable, *, cache: Path | None = None, render: Callable[[dict], Rendered] | None = None,
                  variants: tuple[str, ...] = VARIANTS, people: set[str] | None = None) -> list[Sample]:
    """Photo subjects (people ids or photo names in `people`, default all), synthetic subjects when `render` is
    given, each under `variants`."""
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        raise ValueError(f"unknown variants {bad}; choose from {VARIANTS}")
    subjects = _photo_subjects(table, cache, people)
    if people is not None and not subjects:
        raise ValueError(f"no annotated person matches {sorted(people)}; ids: {[p.id for p in table.people]}")
    if render is not None:
        subjects += _synthetic_subjects(table, render)
    return [make_variant(s, v, table.settings) for s in subjects for v in variants]


def is_subject(lm: np.ndarray, s: Sample) -> bool:
    """The pose's mid-shoulder is nearer to the subject's annotation than to any other person in view, and within
    half the subject box's longer side."""
    m = _mid_shoulder(lm)
    d = float(np.hypot(*(m - s.shoulders)))
    if d > 0.5 * max(s.box[2] - s.box[0], s.box[3] - s.box[1]):
        return False
    return all(d < float(np.hypot(*(m - o))) for o in s.others)


Drift = Callable[[np.ndarray, np.ndarray], "float | None"]


@dataclass
class Outcome:
    """One candidate on one sample: whether it found the subject, and its drift vs the reference."""

    found: bool
    drift: float | None


def reference_subject(s: Sample, ref_lm: np.ndarray | None) -> np.ndarray | None:
    """The reference's pose when it is the subject, else None (the sample is then left out: reference miss)."""
    return ref_lm if ref_lm is not None and is_subject(ref_lm, s) else None


def compare(s: Sample, ref: np.ndarray | None, poses: list[np.ndarray], drift: Drift) -> Outcome | None:
    """None when the reference did not find the subject; else found + the smallest drift among the candidate's
    poses that are the subject."""
    if ref is None:
        return None
    ds = [drift(ref, p) for p in poses if is_subject(p, s)]
    ds = [d for d in ds if d is not None]
    return Outcome(bool(ds), min(ds) if ds else None)


@dataclass
class GroupStat:
    source: str
    dimension: str
    value: str
    n: int  # samples where the reference found the subject
    found: int
    drift_mean: float | None
    drift_p95: float | None = None
    flagged: bool = False
    reasons: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.found / self.n if self.n else None

    def to_dict(self) -> dict:
        r = lambda v, k=5: None if v is None else round(v, k)  # noqa: E731
        return {"source": self.source, "dimension": self.dimension, "value": self.value, "n": self.n,
                "found": self.found, "drift_mean": r(self.drift_mean), "drift_p95": r(self.drift_p95),
                "recall": r(self.recall, 4), "flagged": self.flagged, "reasons": self.reasons}


def stat(source: str, dimension: str, value: str, outcomes: list[Outcome]) -> GroupStat:
    ds = [o.drift for o in outcomes if o.found and o.drift is not None]
    return GroupStat(source, dimension, value, len(outcomes), sum(o.found for o in outcomes),
                     float(np.mean(ds)) if ds else None, float(np.percentile(ds, 95)) if ds else None)


def flag_reasons(g: GroupStat, overall: GroupStat, st: AuditSettings) -> list[str]:
    """Why group g degrades more than the overall mean of its source (empty: not flagged). Drift: above factor x the
    overall mean and by more than min_drift_excess; detection: miss rate above factor x the overall one and by at
    least min_miss_excess. Groups under min_n samples are never flagged."""
    if g.n < st.min_n or g is overall:
        return []
    out = []
    if g.drift_mean is not None and overall.drift_mean is not None \
            and g.drift_mean > st.factor * overall.drift_mean and g.drift_mean - overall.drift_mean > st.min_drift_excess:
        out.append(f"drift {g.drift_mean:.4f} > {st.factor:g} x overall {overall.drift_mean:.4f}")
    g_miss, o_miss = 1 - g.recall, 1 - (overall.recall if overall.n else 1.0)
    if g_miss > st.factor * o_miss and g_miss - o_miss >= st.min_miss_excess - 1e-9:
        out.append(f"recall {g.recall:.2f} vs overall {1 - o_miss:.2f} (miss rate > {st.factor:g} x overall)")
    return out


def group_stats(samples: list[Sample], outcomes: list[Outcome | None], st: AuditSettings) -> dict:
    """{"overall": {source: stat}, "groups": [stat...]} with flags; samples without a reference detection are
    counted in `reference_missed` only."""
    overall, groups, missed = {}, [], {}
    for src in SOURCES:
        pairs = [(s, o) for s, o in zip(samples, outcomes) if s.source == src]
        if not pairs:
            continue
        missed[src] = sum(o is None for _, o in pairs)
        pairs = [(s, o) for s, o in pairs if o is not None]
        ov = stat(src, "all", "all", [o for _, o in pairs])
        overall[src] = ov
        for dim in DIMENSIONS:
            for val in sorted({s.attrs[dim] for s, _ in pairs}):
                g = stat(src, dim, val, [o for s, o in pairs if s.attrs[dim] == val])
                g.reasons = flag_reasons(g, ov, st)
                g.flagged = bool(g.reasons)
                groups.append(g)
    return {"overall": {k: v.to_dict() for k, v in overall.items()}, "reference_missed": missed,
            "groups": [g.to_dict() for g in groups]}


def reference_noise(samples: list[Sample], refs: list[np.ndarray | None], noisy: list[np.ndarray | None],
                    drift: Drift) -> dict[str, dict | None]:
    """Drift of the reference against itself on the same images with ±1 grey level of noise, per source:
    {"mean", "median", "n"} (None when no sample has both)."""
    out = {}
    for src in SOURCES:
        ds = [drift(a, b) for s, a, b in zip(samples, refs, noisy)
              if s.source == src and a is not None and b is not None]
        ds = [d for d in ds if d is not None]
        if any(s.source == src for s in samples):
            out[src] = {"mean": round(float(np.mean(ds)), 5), "median": round(float(np.median(ds)), 5),
                        "n": len(ds)} if ds else None
    return out


def with_noise(img: np.ndarray, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + rng.integers(-1, 2, img.shape, dtype=np.int16), 0, 255).astype(np.uint8)
