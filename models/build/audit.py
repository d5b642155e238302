"""`edge models audit`: per-group accuracy of every built pose landmark model and precision vs MediaPipe Pose, the
Audit section of its model card, and the default-precision gate of `edge models build`.

Measurement: calibration/audit.py (samples, variants, matching, group statistics, flags). Here: the candidates (the
product pose pipeline, `pose_detection` FP32 + the landmark artefact, on the artefact's backend), the reference
(devtools.pose_reference, MediaPipe 0.10.21 in its own venv, static image mode), the synthetic renderer
(devtools.mannequin with a drawn face), the card section and `calibration/reports/<name>.audit.json`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import shlex
import time
from pathlib import Path

import numpy as np

from models.build.report import CARDS, KEEP_MARK, REPORTS

log = logging.getLogger(__name__)
TASK = "pose_landmarks"
DETECTOR = "pose_detection"
BEGIN = "<!-- audit: written by `edge models audit`; edits between these marks are replaced -->"
END = "<!-- /audit -->"
LABELS = {"skin_tone": "skin tone", "body_size": "body size", "clothing": "clothing", "distance": "distance",
          "lighting": "lighting", "occlusion": "occlusion"}


class AuditGateError(RuntimeError):
    """A default precision of a pose landmark model is not cleared by its last audit."""


# ---------------------------------------------------------------------------------------------------- command line

def add_arguments(p: argparse.ArgumentParser) -> None:
    from calibration.audit import VARIANTS
    p.add_argument("--only", action="append", metavar="NAME", help="audit only this model (repeatable; default: "
                   "every pose landmark model in the zoo)")
    p.add_argument("--cache", metavar="DIR")
    p.add_argument("--backends", nargs="+", metavar="B", help="only these backends")
    p.add_argument("--precisions", nargs="+", metavar="P", help="only these precisions (fp32 int8 int8_full ...)")
    p.add_argument("--people", nargs="+", metavar="ID", help="only these people ids or photos (a partial audit: "
                   "never clears a default)")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--no-synthetic", action="store_true", help="leave out the synthetic renders")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--factor", type=float, help="flag factor (default: [settings] factor of the table, 1.5)")
    p.add_argument("--table", metavar="TOML", help="people table (default calibration/audit_people.toml)")
    p.add_argument("--json", metavar="PATH", help="write the whole result as JSON")
    p.add_argument("--no-write", action="store_true", help="do not update the model cards and audit reports")
    p.add_argument("--cards-dir", metavar="DIR", default=str(CARDS), help=argparse.SUPPRESS)
    p.add_argument("--reports-dir", metavar="DIR", default=str(REPORTS), help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    from calibration.audit import TABLE, AuditTableError, load_table
    from devtools.pose_reference import ReferenceError
    from models.zoo import ModelZoo

    try:
        table = load_table(Path(args.table) if args.table else TABLE)
        if args.factor is not None:
            table.settings.factor = args.factor
    except (AuditTableError, ValueError) as e:
        print(f"edge models audit: {e}")
        return 2
    zoo = ModelZoo(args.cache)
    names = args.only or [n for n in zoo.names() if zoo.manifest(n)["task"] == TASK]
    bad = [n for n in names if n not in zoo.names() or zoo.manifest(n)["task"] != TASK]
    if bad:
        print(f"edge models audit: {bad} are not pose landmark models; choose from "
              f"{[n for n in zoo.names() if zoo.manifest(n)['task'] == TASK]}")
        return 2
    try:
        result = audit(zoo, names, table, args)
    except (ReferenceError, AuditTableError, ValueError, FileNotFoundError) as e:
        print(f"edge models audit: FAILED\n{e}")
        return 1
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(dumps(result) + "\n")
    for name, mr in result["models"].items():
        if mr["status"] != "audited":
            print(f"{name}: {mr['status']}")
            continue
        flagged = [f"{c['backend']}/{c['precision']}" for c in mr["configs"] if any(g["flagged"] for g in c["groups"])]
        print(f"{name}: {len(mr['configs'])} configuration(s) audited; flagged groups in: {', '.join(flagged) or 'none'}")
        if not args.no_write:
            write_report(result, name, Path(args.reports_dir))
            card = Path(args.cards_dir) / f"{name}.md"
            write_card_section(card, card_section(result, name))
            print(f"  wrote {card} and {Path(args.reports_dir) / f'{name}.audit.json'}")
    audited = [n for n, mr in result["models"].items() if mr["status"] == "audited"]
    if audited and not args.no_write:
        for line in refused_defaults(audited, Path(args.reports_dir)):
            print(f"  `edge models build` will refuse this default now: {line}")
    return 0


def refused_defaults(names: list[str] | None, reports_dir: Path | None = None, built_sha=None) -> list[str]:
    """default_problems for these models' manifests (None: every model): the build's gate, and what `edge models
    audit` says at once about the reports it just wrote."""
    from models.manifest import load_all

    return default_problems({n: m for n, m in load_all().items() if not names or n in names}, reports_dir, built_sha)


# ------------------------------------------------------------------------------------------------------ measuring

def renderer():
    """Synthetic subject spec -> calibration.audit.Rendered: the mannequin with the spec's skin, shirt and girth,
    and a drawn face (eyes, brows, nose, mouth at its landmarks: the pose detector keys on faces)."""
    import cv2

    from calibration.audit import Rendered
    from devtools.mannequin import render_person
    from edge.pose.types import LM
    from edge.tryon.intrinsics import Intrinsics

    intr = Intrinsics.from_hfov(640, 480, 60.0)

    def render(spec: dict) -> Rendered:
        p = render_person(intr, yaw_deg=spec["yaw_deg"], distance=spec["distance_m"], skin=spec["skin_bgr"],
                          shirt=spec["shirt_bgr"], girth=spec["girth"])
        img, uv, z = p.image, intr.project(p.cam), p.cam[LM["nose"], 2]

        def s(m: float) -> int:
            return max(1, int(round(m * intr.fx / z)))

        def pt(n: str) -> tuple[int, int]:
            return tuple(int(round(c)) for c in uv[LM[n]])

        for side in ("left", "right"):
            e = pt(f"{side}_eye")
            cv2.ellipse(img, e, (s(0.016), s(0.008)), 0, 0, 360, (235, 235, 235), -1, cv2.LINE_AA)
            cv2.circle(img, e, s(0.0065), (40, 30, 25), -1, cv2.LINE_AA)
            up = np.array([0, -s(0.02)])
            a, b = (tuple(np.round(uv[LM[f"{side}_eye_{k}"]] + up).astype(int)) for k in ("inner", "outer"))
            cv2.line(img, a, b, (35, 35, 40), s(0.006), cv2.LINE_AA)
        n = pt("nose")
        cv2.line(img, (n[0], n[1] - s(0.03)), n, tuple(int(c * 0.55) for c in spec["skin_bgr"]), s(0.008), cv2.LINE_AA)
        cv2.line(img, pt("mouth_left"), pt("mouth_right"), (60, 60, 150), s(0.008), cv2.LINE_AA)
        return Rendered(img, p.mask, p.person_pose().landmarks)

    return render


def _open_pipeline(zoo, art, threads: int):
    from edge.backends import load_session
    from edge.pose.config import PoseConfig
    from edge.pose.pipeline import PosePipeline, landmark_outputs

    cfg = PoseConfig(max_people=4, segmentation=False)
    det_a = zoo.artifact(DETECTOR, art.backend, "fp32")
    det = load_session(art.backend, det_a.path, threads=threads, precision="fp32")
    lmk = load_session(art.backend, art.path, threads=threads, precision=art.precision,
                       outputs=landmark_outputs(cfg))
    return PosePipeline.from_sessions(cfg, det, lmk)


def _poses(pipe, image) -> list[np.ndarray]:
    """Static image: fresh tracking state, one frame."""
    from edge.core.frames import Frame

    pipe.reset()
    return [p.landmarks for p in pipe.process(Frame(image, 0, time.monotonic(), 0.0)).people]


def _command(args) -> str:
    """The command line that reproduces this run (options that differ from the defaults)."""
    from calibration.audit import VARIANTS

    parts = ["edge", "models", "audit"]
    for n in args.only or []:
        parts += ["--only", n]
    for flag, v in (("--backends", args.backends), ("--precisions", args.precisions), ("--people", args.people)):
        if v:
            parts += [flag, *v]
    if list(args.variants) != list(VARIANTS):
        parts += ["--variants", *args.variants]
    if args.no_synthetic:
        parts.append("--no-synthetic")
    if args.factor is not None:
        parts += ["--factor", f"{args.factor:g}"]
    if args.table:
        parts += ["--table", args.table]
    return shlex.join(parts)


def audit(zoo, names: list[str], table, args) -> dict:
    """Run the reference once over the samples, then every selected artefact of every model in `names`."""
    from calibration import audit as ca
    from devtools.pose_metrics import drift
    from devtools.pose_reference import MediaPipeReference
    from edge.backends.base import BackendError
    from models.zoo import ModelNotBuilt

    st = table.settings
    samples = ca.build_samples(table, cache=zoo.cache, render=None if args.no_synthetic else renderer(),
                               variants=tuple(args.variants), people=set(args.people) if args.people else None)
    log.info("audit: %d samples (%d photo, %d synthetic)", len(samples),
             sum(s.source == "photos" for s in samples), sum(s.source == "synthetic" for s in samples))
    t0 = time.perf_counter()
    with MediaPipeReference(cache=zoo.cache) as ref:
        ref.open("static", static=True)
        raw = [ref.process(s.image, "static").landmarks for s in samples]
        noisy = [ref.process(ca.with_noise(s.image), "static").landmarks for s in samples]
        versions = ref.versions
    refs = [ca.reference_subject(s, r) for s, r in zip(samples, raw)]
    log.info("reference: subject found in %d/%d samples (%.0f s)", sum(r is not None for r in refs), len(samples),
             time.perf_counter() - t0)
    synth = [(s, r) for s, r in zip(samples, refs) if s.truth is not None]
    vs_truth = ca.group_stats([s for s, _ in synth], [
        ca.Outcome(r is not None, drift(s.truth, r) if r is not None else None) for s, r in synth], st) if synth else None
    complete = not args.people and set(args.variants) == set(ca.VARIANTS) and not args.no_synthetic
    result = {
        "tool": "edge models audit", "command": _command(args),
        "date": dt.date.today().isoformat(), "complete": complete, "settings": st.model_dump(mode="json"),
        "reference": {"model": "MediaPipe Pose (static image mode, model_complexity 1)", "versions": versions,
                      "self_noise": ca.reference_noise(samples, refs, [
                          ca.reference_subject(s, r) for s, r in zip(samples, noisy)], drift),
                      "found": {src: [sum(r is not None for s, r in zip(samples, refs) if s.source == src),
                                      sum(s.source == src for s in samples)] for src in ca.SOURCES}},
        "reference_vs_truth": vs_truth,
        "data": {"table": args.table or "calibration/audit_people.toml",
                 "people": [p.model_dump(mode="json") for p in table.people
                            if any(s.subject == p.id for s in samples)],
                 "synthetic": [{k: v for k, v in sp.items() if not k.endswith("_bgr")}
                               for sp in ca.synthetic_specs(table.synthetic)] if not args.no_synthetic else [],
                 "variants": list(args.variants),
                 "samples": [{"key": s.key, "source": s.source, "attrs": s.attrs, "reference_found": r is not None}
                             for s, r in zip(samples, refs)]},
        "models": {},
    }
    for name in names:
        m = zoo.manifest(name)
        arts = [a for a in zoo.artifacts(name) if (not args.backends or a.backend in args.backends)
                and (not args.precisions or a.precision in args.precisions)]
        if not arts:
            log.warning("%s: no built artefact to audit (run `edge models build`)", name)
            result["models"][name] = {"version": m["version"], "status": "not built: run `edge models build`",
                                      "configs": []}
            continue
        configs, skipped = [], []
        for a in arts:
            t1 = time.perf_counter()
            try:
                pipe = _open_pipeline(zoo, a, args.threads)
            except (ModelNotBuilt, KeyError, BackendError) as e:  # recorded as skipped, the others still run
                log.warning("%s %s/%s skipped: %s", name, a.backend, a.precision, e)
                skipped.append({"backend": a.backend, "precision": a.precision, "reason": str(e)})
                continue
            try:
                outcomes = [ca.compare(s, r, _poses(pipe, s.image), drift) if r is not None else None
                            for s, r in zip(samples, refs)]
            finally:
                pipe.close()
            stats = ca.group_stats(samples, outcomes, st)
            configs.append({"backend": a.backend, "precision": a.precision, "file": a.path.name, "sha256": a.sha256,
                            "default": m["defaults"].get(a.backend, {}).get("precision") == a.precision,
                            "detector": f"{DETECTOR} fp32 ({a.backend})", **stats,
                            # per sample, in the order of data.samples; null where the reference missed
                            "found": [None if o is None else o.found for o in outcomes],
                            "drift": [None if o is None or o.drift is None else round(o.drift, 5) for o in outcomes]})
            log.info("%s %s/%s: overall %s (%.0f s)", name, a.backend, a.precision, stats["overall"],
                     time.perf_counter() - t1)
        result["models"][name] = {"version": m["version"], "status": "audited", "configs": configs,
                                  "skipped": skipped}
    return result


# ------------------------------------------------------------------------------------------------ report and card

def report_path(name: str, reports_dir: Path | None = None) -> Path:
    """`<reports_dir>/<name>.audit.json` (default calibration/reports/, read when called)."""
    return Path(reports_dir or REPORTS) / f"{name}.audit.json"


def write_report(result: dict, name: str, reports_dir: Path | None = None) -> Path:
    """calibration/reports/<name>.audit.json: the shared parts of the run + this model's entry (the gate reads it)."""
    one = {k: v for k, v in result.items() if k != "models"}
    one["model"] = name
    one.update(result["models"][name])
    p = report_path(name, reports_dir)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(one) + "\n")
    return p


def dumps(obj, indent: int = 0) -> str:
    """JSON with one key per line, but lists of scalars and small flat objects (a group's numbers) on one line."""
    pad = " " * (indent + 1)

    def flat(v) -> bool:
        return not isinstance(v, (dict, list)) or (isinstance(v, list) and not any(isinstance(x, (dict, list))
                                                                                    for x in v))
    if isinstance(obj, dict) and obj and len(obj) <= 12 and all(flat(v) for v in obj.values()):
        return json.dumps(obj)
    if isinstance(obj, dict) and obj:
        items = [f"{pad}{json.dumps(str(k))}: {dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj) and not all(
            isinstance(x, list) and not any(isinstance(y, (dict, list)) for y in x) for x in obj):
        return "[\n" + ",\n".join(pad + dumps(x, indent + 1) for x in obj) + "\n" + " " * indent + "]"
    return json.dumps(obj)


def _cell(g: dict | None) -> str:
    if g is None or not g["n"]:
        return "–"
    d = "–" if g["drift_mean"] is None else f"{g['drift_mean']:.3f}"
    c = f"{d} / {g['recall']:.2f}"
    return f"**{c} ⚑**" if g["flagged"] else c


def _table(src: str, configs: list[dict], extra: tuple[str, dict] | None = None) -> list[str]:
    from calibration.audit import DIMENSIONS

    heads = [f"{c['backend']} {c['precision']}{' (default)' if c['default'] else ''}" for c in configs]
    if extra:
        heads.append(extra[0])
    rows = ["| group | n | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]

    def find(stats: dict, dim: str, val: str) -> dict | None:
        if dim == "all":
            return (stats.get("overall") or {}).get(src)
        return next((g for g in stats["groups"] if g["source"] == src and g["dimension"] == dim and g["value"] == val),
                    None)

    every = [c for c in configs] + ([extra[1]] if extra else [])
    keys = [("all", "all")] + [(d, v) for d in DIMENSIONS for v in sorted(
        {g["value"] for c in every for g in c["groups"] if g["source"] == src and g["dimension"] == d})]
    for dim, val in keys:
        first = find(configs[0] if configs else extra[1], dim, val)
        label = "**all**" if dim == "all" else f"{LABELS[dim]}: {val}"
        rows.append(f"| {label} | {first['n'] if first else 0} | "
                    + " | ".join(_cell(find(c, dim, val)) for c in every) + " |")
    return rows


LIMITS = """\
**Limits of this data set** (read before trusting any number above):
- The reference is MediaPipe Pose, the same BlazePose network the FP32 artefacts are converted from: drift and \
recall say what conversion, quantization or distillation *changed* per group, not how well BlazePose itself works \
for each group. Only the synthetic renders have ground truth (column "MediaPipe vs render truth").
- {n_people} people in 6 photos shipped in Python packages, annotated by hand from visible attributes only. Skin \
tone (Monk scale): {skin}. Nobody in the photos has a dark skin tone (Monk 7-10): that group exists only as \
synthetic renders. Apparent body size: {size}; nobody large-bodied. Clothing: {clothing}. No head coverings, \
mobility aids, wheelchairs, children or older crowds; no overhead or from-behind views.
- The reference never found {never} in any variant: they cannot be scored here. A person both the reference and \
the product miss is a recall gap of BlazePose itself, which this audit cannot measure (no ground truth on photos).
- Four of the six photos (bus, zidane, t1, grace_hopper) are the INT8 calibration photos: INT8 was tuned on these \
people, so its numbers here are optimistic.
- Variants are made from the same people (lighting, far, bar): not independent samples. Groups are small (n = \
samples where the reference found the person); a flag on n < 10 is a warning to look closer, not a measurement.
- The synthetic renders are flat-shaded capsule mannequins with a drawn face in one pose; the reference finds only \
some of them, so they show gross effects of skin tone, body size and clothing contrast at most.
- Not covered: real store cameras (overhead, fisheye, motion blur, compression), crowds, age, disability, \
religious dress. Re-run the audit on consented, device-collected frames before changing a default."""


def _noise(sn: dict) -> str:
    return ", ".join(f"{src} mean {v['mean']:.3f} / median {v['median']:.3f}" if v else f"{src} –"
                     for src, v in sn.items())


def _counts(people: list[dict], key: str, values: tuple[str, ...]) -> str:
    return ", ".join(f"{v} {sum(p[key] == v for p in people)}" for v in values)


def card_section(result: dict, name: str) -> str:
    """The card's Audit section (between BEGIN/END marks) for one model."""
    mr = result["models"][name]
    st = result["settings"]
    ref = result["reference"]
    people = result["data"]["people"]
    lines = [BEGIN, "## Audit (`edge models audit`)", "",
             f"Run {result['date']}: `{result['command']}`{'' if result['complete'] else ' (partial audit)'}; "
             f"reference {ref['model']}, mediapipe {ref['versions'].get('mediapipe')}; each candidate is the product "
             "pose pipeline (`pose_detection` FP32 + this artefact, same backend) on the same still image. "
             "Cell: **drift mean / recall**. Drift = mean 2D landmark distance to the reference over the landmarks "
             "the reference sees, / torso size; recall = share of the reference's detections of the person the "
             "candidate also finds. Samples where the reference did not find the person are left out "
             f"(photos {ref['found'].get('photos', [0, 0])[0]}/{ref['found'].get('photos', [0, 0])[1]} found, "
             f"synthetic {ref['found'].get('synthetic', [0, 0])[0]}/{ref['found'].get('synthetic', [0, 0])[1]}). "
             f"⚑ = flagged: a group with n ≥ {st['min_n']} whose drift exceeds {st['factor']:g} × the overall mean "
             f"of its source (photos or synthetic) and by > {st['min_drift_excess']:g}, or whose miss rate exceeds "
             f"{st['factor']:g} × the overall one and by ≥ {st['min_miss_excess']:g}. The reference against itself "
             f"with ±1 grey level of noise drifts {_noise(ref['self_noise'])} (BlazePose's own instability on these "
             "images). `edge models build` refuses a default precision whose audit flags a group. Raw numbers: "
             f"`calibration/reports/{name}.audit.json`.", ""]
    if mr["status"] != "audited":
        lines += [f"Not audited: {mr['status']}.", "", END]
        return "\n".join(lines)
    configs = mr["configs"]
    variants = ", ".join(result["data"]["variants"])
    lines += [f"**Package photos** ({len(people)} people x variants {variants}; people in "
              "`calibration/audit_people.toml`)", ""]
    lines += _table("photos", configs)
    if any(s["source"] == "synthetic" for s in result["data"]["samples"]):
        synth = result["data"]["synthetic"]
        lines += ["", f"**Synthetic renders** ({len(synth)} mannequins: Monk "
                  f"{sorted({s['monk'] for s in synth})} skin, girth {sorted({s['girth'] for s in synth})}, light/dark "
                  "shirt; same variants). Last column: MediaPipe itself against the renders' exact landmarks.", ""]
        vt = result.get("reference_vs_truth")
        lines += _table("synthetic", configs, ("MediaPipe vs render truth", vt) if vt else None)
    if mr.get("skipped"):
        lines += ["", "Not audited (could not be opened): " + "; ".join(
            f"{k['backend']}/{k['precision']} ({k['reason']})" for k in mr["skipped"])]
    flagged = [(c, g) for c in configs for g in c["groups"] if g["flagged"]]
    lines += ["", "**Flagged**: " + ("none." if not flagged else "")]
    lines += [f"- {c['backend']}/{c['precision']}{' (default)' if c['default'] else ''}: {g['source']} "
              f"{LABELS[g['dimension']]} = {g['value']} (n {g['n']}): {'; '.join(g['reasons'])}" for c, g in flagged]
    vt = result.get("reference_vs_truth")
    if vt:
        vf = [g for g in vt["groups"] if g["flagged"]]
        lines += ["", "MediaPipe vs render truth (not a precision choice; the upstream model): "
                  + ("no group flagged." if not vf else "; ".join(
                      f"{LABELS[g['dimension']]} = {g['value']}: {'; '.join(g['reasons'])}" for g in vf))]
    never = [p["id"] for p in people if not any(s["reference_found"] for s in result["data"]["samples"]
                                                 if s["key"].split("@")[0] == p["id"])]
    lines += ["", LIMITS.format(
        n_people=len(people), skin=_counts(people, "skin_tone", ("light", "medium", "dark", "unknown")),
        size=_counts(people, "body_size", ("slim", "average", "large", "unknown")),
        clothing=_counts(people, "clothing", ("dark", "mid", "light")),
        never=", ".join(never) or "none"), END]
    return "\n".join(lines)


def write_card_section(card: Path, section: str) -> None:
    """Put `section` below the card's hand-written marker, replacing a previous audit section; the rest stays."""
    old = card.read_text() if card.is_file() else ""
    if KEEP_MARK not in old:
        old = (old.rstrip("\n") + "\n\n" if old.strip() else "") + KEEP_MARK + "\n"
    head, tail = old.split(KEEP_MARK, 1)
    if BEGIN in tail and END in tail[tail.index(BEGIN):]:
        a = tail.index(BEGIN)
        b = tail.index(END, a) + len(END)
        tail = tail[:a] + section + tail[b:]
    else:
        tail = tail.rstrip("\n") + "\n\n" + section + "\n"
    card.parent.mkdir(parents=True, exist_ok=True)
    card.write_text(head + KEEP_MARK + tail)


# ----------------------------------------------------------------------------------------------------------- gate

def default_problems(manifests: dict[str, dict], reports_dir: Path | None = None, built_sha=None) -> list[str]:
    """Why each pose landmark model's default precisions are not cleared by its last audit (empty: all clear).

    A default whose audit flags a group is refused, naming the group. A default other than fp32 also needs a complete
    audit of the manifest's version (and, when `built_sha(name, backend, precision)` gives the built artefact's
    sha256, of that very file). FP32 without an audit passes: it is the reference network."""
    out = []
    for name, m in sorted(manifests.items()):
        if m.get("task") != TASK:
            continue
        p = report_path(name, reports_dir)
        try:
            rep = json.loads(p.read_text()) if p.is_file() else None
        except (OSError, ValueError) as e:
            out.append(f"{name}: cannot read {p}: {e} (fix: re-run `edge models audit --only {name}`)")
            continue
        for backend, d in sorted(m.get("defaults", {}).items()):
            prec = d["precision"]
            where = f"{name}: [defaults.{backend}] precision = \"{prec}\" (models/manifests/{name}.toml)"
            rerun = f"run `edge models audit --only {name}` and commit {p.name}"
            entry = None
            if rep and rep.get("version") == m.get("version"):
                entry = next((c for c in rep.get("configs", []) if c["backend"] == backend
                              and c["precision"] == prec), None)
            if entry is None:
                if prec != "fp32":
                    out.append(f"{where} has no audit of version {m.get('version')} (fix: {rerun}, or make "
                               "\"fp32\" the default)")
                continue
            if prec != "fp32":
                sha = built_sha(name, backend, prec) if built_sha else None
                if not rep.get("complete"):
                    out.append(f"{where}: its audit is partial ({rep.get('command')}) (fix: {rerun} without "
                               "--people/--variants/--no-synthetic)")
                    continue
                if sha and sha != entry.get("sha256"):
                    out.append(f"{where}: the built file {entry.get('file')} changed since its audit (fix: {rerun})")
                    continue
            flagged = [g for g in entry.get("groups", []) if g.get("flagged")]
            if flagged:
                groups = "; ".join(f"{g['source']} {g['dimension']} = {g['value']} (n {g['n']}: "
                                   f"{', '.join(g.get('reasons', []))})" for g in flagged)
                fix = "make \"fp32\" the default" if prec != "fp32" else "make a precision the default whose audit " \
                      "flags no group"
                out.append(f"{where} degrades one group much more than the others in its last audit ({p.name}, "
                           f"{rep.get('date')}): {groups} (fix: {fix}, or improve the {prec} model until "
                           f"`edge models audit --only {name}` flags no group)")
    return out


def gate(only: list[str] | None = None, cache: Path | None = None, reports_dir: Path | None = None) -> None:
    """`edge models build`'s check: raise AuditGateError listing every default precision the audit does not clear."""
    from models.zoo import ModelZoo

    zoo = ModelZoo(cache) if cache else None

    def built_sha(name: str, backend: str, precision: str) -> str | None:
        a = [x for x in zoo.artifacts(name) if x.backend == backend and x.precision == precision] if zoo else []
        return a[0].sha256 if a else None

    problems = refused_defaults(only, reports_dir, built_sha)
    if problems:
        raise AuditGateError("default precision refused by the model audit:\n  " + "\n  ".join(problems))
