"""A throw-away model cache in which the build chain makes pose_landmark_student for real.

The student's build needs the teacher's calibration sets, the package photos and the teacher's source file; they
are copied (never linked: a re-run step must not write into the real cache) from the built real cache together with
their step records, so the chain finds them current and runs only the student's own steps. pose_detection's built
folder is copied too, so a device config pointing at this cache runs the whole pose pipeline, and the signing keys,
so its signed built.json verifies there as in the real cache.
"""
from __future__ import annotations

import shutil
from pathlib import Path

STUDENT, TEACHER, DETECTOR = "pose_landmark_student", "pose_landmark_full", "pose_detection"
STUDENT_STEPS = {"source", "golden", "ov_convert", "verify_fp32", "eval_teacher", "sign"}  # with skip_int8


def prepared_cache(real: Path, dst: Path) -> Path:
    from models.manifest import load_all

    ms = load_all()
    for sub in ("photos", "calibration", "keys"):  # keys: the copied built.json files are signed by the real cache's
        shutil.copytree(real / sub, dst / sub)      # key, which the runtime checks before it loads a model
    t = ms[TEACHER]
    src_dir, out_dir = real / "models" / TEACHER / t["version"], dst / "models" / TEACHER / t["version"]
    (out_dir / ".steps").mkdir(parents=True)
    shutil.copy2(src_dir / t["artifacts"][0]["file"], out_dir)
    shutil.copy2(src_dir / ".steps" / "source.json", out_dir / ".steps")
    det = ms[DETECTOR]["version"]
    shutil.copytree(real / "models" / DETECTOR / det, dst / "models" / DETECTOR / det,
                    ignore=shutil.ignore_patterns("work", "logs"))
    (dst / "downloads").symlink_to(real / "downloads")  # only read (wheels), and only if a source step re-runs
    return dst


def build_student(real: Path, dst: Path, skip_int8: bool = True):
    """(cache, BuildResult): the student built by the chain in `dst` (a prepared copy of `real`)."""
    from models.build.chain import Chain

    cache = prepared_cache(real, dst)
    return cache, Chain(cache, only=[STUDENT], skip_int8=skip_int8).run(progress=False)
