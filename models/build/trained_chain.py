"""Build steps for models the project trained and committed (source.kind = "trained", e.g. pose_landmark_student).

source ─ golden ─ ov_convert ─ verify_fp32 ─ eval_teacher ─ nncf_int8 / ort_int8 ─ eval_int8 ─ sign

| step | where | what |
|---|---|---|
| source | in-process | the committed ONNX (models/trained/<name>/) checked against the manifest and PROVENANCE.json (sha256, size, the teacher source it was trained from: models.build.trained), copied into the model folder |
| golden | in-process | that ONNX on onnxruntime over the teacher's golden inputs (`<cache>/calibration/<teacher>/golden.npz`) |
| ov_convert | runtime venv | steps/ov_convert.py on the ONNX → IR FP32 |
| verify_fp32 | in-process | every FP32 file vs the golden outputs (manifest `[verify]`) |
| eval_teacher | in-process | FP32 (and INT8) vs the teacher's original .tflite on the teacher's held-out set → work/accuracy_teacher.json |
| INT8, eval_int8 | quant venv, in-process | NNCF / onnxruntime PTQ on the teacher's calibration set; INT8 vs the student's FP32 ONNX |

A committed file that is missing, altered or trained from another teacher source does not fail the build: the model
is left out (not planned, not signed) with a warning naming the fix, and every other model builds as usual.
"""
from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

from models.build import trained, venvs, verify
from models.build.plan import BuildError, Step, arg_key, bins, model_dir, quantize_steps, runtime_versions, write_json

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
STEPS_DIR = Path(__file__).resolve().parent / "steps"
EVAL_CODE = [Path(__file__), Path(verify.__file__), Path(__file__).parent / "runners.py",
             ROOT / "calibration" / "accuracy.py", ROOT / "calibration" / "matching.py"]


def is_trained_model(m: dict) -> bool:
    return m["source"].get("kind", "wheel") == "trained"


def committed_file(chain, name: str) -> trained.TrainedFile:
    """The committed source file, checked against PROVENANCE.json and the manifest; TrainedError otherwise."""
    m = chain.all[name]
    s = m["source"]
    teacher = chain.all.get(s["teacher"])
    if teacher is None:
        raise BuildError(f"{name}: source.teacher {s['teacher']!r} is not a model of the zoo ({sorted(chain.all)})")
    f = trained.verified_file(name, s["member"], teacher["source"]["sha256"])
    if (f.sha256, f.size_bytes) != (s["sha256"], s["size_bytes"]):
        raise trained.TrainedError(
            f"{f.path}: sha256 {f.sha256[:12]} / {f.size_bytes} bytes, the manifest says {s['sha256'][:12]} / "
            f"{s['size_bytes']} bytes: update source.sha256 and size_bytes in models/manifests/{name}.toml with the "
            "new file's (and re-measure its defaults), or restore the file from git")
    return f


def model_steps(chain, name: str) -> list[Step]:
    m = chain.all[name]
    try:
        committed = committed_file(chain, name)
    except trained.TrainedError as e:
        log.warning("%s left out of the zoo: %s. The other models are built as usual.", name, e)
        chain.names = [n for n in chain.names if n != name]  # plan() iterates the old list; run() signs the new one
        chain.left_out.add((name, m["source"]["member"]))
        return []
    d = model_dir(chain.cache, m)
    w = d / "work"
    cal = m["calibration"]
    teacher = m["source"]["teacher"]
    sets = chain.cache / "calibration" / teacher
    golden_in, calib, heldout = sets / "golden.npz", sets / "calib.npz", sets / "heldout.npz"
    golden = d / "golden.npz"
    by_producer: dict[str, list[dict]] = {}
    for a in m["artifacts"]:
        by_producer.setdefault(a["producer"], []).append(a)
    onnx = d / m["source"]["member"]
    if [a["file"] for a in by_producer.get("source", [])] != [onnx.name]:
        raise BuildError(f"{name}: the source artefact (producer = 'source') must be the committed {onnx.name}")
    steps: list[Step] = []

    def sub(step: str, venv: str | None, script: str, args: list, outs: list[Path], inputs: list[Path],
            params: dict | None = None) -> Step:
        argv = [str(STEPS_DIR / script), *map(str, args)]

        def command():
            py = str(venvs.ensure(chain.cache, venv)) if venv else sys.executable
            return [py, *argv]
        vkey = venvs.SPECS[venv].key if venv else "runtime"
        return Step(name, step, outs, chain._rec(name, step), inputs=inputs,
                    params={"venv": vkey, "args": arg_key(args), **(params or {})},
                    code=[STEPS_DIR / script, STEPS_DIR / "_util.py"], command=command, argv=argv,
                    log_path=d / "logs" / f"{step}.log")

    def copy():
        tmp = onnx.with_name(onnx.name + ".part")
        shutil.copyfile(committed.path, tmp)
        tmp.replace(onnx)
    steps.append(Step(name, "source", [onnx], chain._rec(name, "source"), inputs=[committed.path],
                      params={"sha256": committed.sha256}, code=[Path(trained.__file__), Path(__file__)], action=copy))
    steps.append(Step(name, "golden", [golden], chain._rec(name, "golden"), inputs=[onnx, golden_in],
                      params={"norm": cal["norm"], "runtime": runtime_versions()}, code=EVAL_CODE,
                      action=lambda: verify.make_golden(onnx, golden_in, cal["norm"], golden)))
    fp32 = [onnx]
    for a in by_producer.get("ov_convert", []):
        ov = d / a["file"]
        steps.append(sub("ov_convert", None, "ov_convert.py", [onnx, ov], [ov, ov.with_suffix(".bin")], [onnx],
                         {"openvino": runtime_versions()["openvino"]}))
        fp32.append(ov)
    vf = w / "verify_fp32.json"
    v = m["verify"]
    steps.append(Step(name, "verify_fp32", [vf], chain._rec(name, "verify_fp32"), inputs=[golden, *fp32, *bins(fp32)],
                      params={**v, "runtime": runtime_versions()}, code=EVAL_CODE,
                      action=lambda: write_json(vf, {p.name: verify.parity(
                          golden, p, v["fp32_atol"], v["fp32_rtol"], v.get("output_atol")) for p in fp32})))
    int8: dict[str, Path] = {}
    if not chain.skip_int8:
        q_steps, int8 = quantize_steps(sub, m, by_producer, d, fp32[-1], onnx, calib)
        steps += q_steps
        acc = w / "accuracy_int8.json"
        steps.append(Step(name, "eval_int8", [acc], chain._rec(name, "eval_int8"),
                          inputs=[onnx, heldout, *int8.values(), *bins(int8.values())],
                          params={"metric": cal["metric"], "input_size": cal["input_size"], "norm": cal["norm"],
                                  "runtime": runtime_versions()}, code=EVAL_CODE,
                          action=lambda: write_json(acc, verify.int8_accuracy(
                              cal["metric"], cal["input_size"], heldout, cal["norm"], onnx, int8))))
    ref = chain.src(teacher)
    variants = {"onnxruntime/fp32": onnx, **int8}
    acc_t = w / "accuracy_teacher.json"
    steps.append(Step(name, "eval_teacher", [acc_t], chain._rec(name, "eval_teacher"),
                      inputs=[ref, heldout, *variants.values(), *bins(variants.values())],
                      params={"metric": cal["metric"], "teacher": teacher, "input_size": cal["input_size"],
                              "norm": cal["norm"], "runtime": runtime_versions()}, code=EVAL_CODE,
                      action=lambda: write_json(acc_t, vs_teacher(cal, heldout, ref, variants))))
    return steps


def vs_teacher(cal: dict, heldout: Path, teacher: Path, variants: dict[str, Path]) -> dict:
    """Each variant vs the teacher's original model on the held-out set (calibration.accuracy.compare): the
    distillation gap, reported, never a build failure (the student's targets are recorded in its manifest)."""
    import numpy as np

    from calibration.accuracy import compare
    from models.build.runners import open_model, run_batch

    ins = verify.model_inputs(heldout, cal["norm"])
    with np.errstate(over="ignore"):
        ref = run_batch(open_model(teacher), ins)
        out = {}
        for label, path in variants.items():
            out[label] = compare(cal["metric"], cal["input_size"], ref, run_batch(open_model(path), ins))
            log.info("%s vs teacher: %s", path.name, {k: round(x, 4) if isinstance(x, float) else x
                                                      for k, x in out[label].items()})
    return out
