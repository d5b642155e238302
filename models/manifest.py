"""Committed model manifests (`models/manifests/<name>.toml`): loading and schema validation.

A bad manifest raises ManifestError naming the file, the key path and what is wrong; unknown keys are errors.
The optional `[tolerance.<precision>]` tables hold the model's golden-parity tolerance (edge.backends.parity).
"""
from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"

BACKENDS = ("onnxruntime", "openvino", "tflite")
PRECISIONS = ("fp32", "int8", "int8_full", "int8_qat", "bf16")
FORMATS = {"tflite": ".tflite", "onnx": ".onnx", "openvino": ".xml"}
PRODUCERS = ("source", "tf2onnx", "ov_convert", "nncf", "ort_quant", "aeq", "tflite_convert", "trained", "ov_bf16")
METRICS = ("landmarks", "pose_detector", "face_detector", "people_detector", "palm_detector", "hand_landmarks")
SOURCE_KINDS = ("wheel", "npm", "trained")  # npm: a TF.js graph model in an npm tarball, converted through
# TensorFlow; trained: an ONNX file the project trained and committed under models/trained/<name>/
# a version names the folder <cache>/models/<name>/<version>/ and one topic level of fleet updates (sync.topics
# checks offers with it)
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
RECIPES = ("nanodet", "movenet")  # graph edits of models/build/steps/tfjs_graph.py


class ManifestError(ValueError):
    """A manifest is missing, unreadable or does not match the schema."""


_S, _I, _F, _L, _B, _D = str, int, float, list, bool, dict
# [quantization.ignored_scope]: the layers the OpenVINO `int8` artefact (NNCF) and QAT keep FP32, named by their place
# in the graph (node names differ between formats): models/build/steps/nncf_scope.py resolves them.
IGNORED_SCOPE = {"first_convs": (_I, False), "head_convs": (_L, False), "branches": (_L, False),
                 "upsampling": (_B, False), "note": (_S, False)}
# key -> (type, required). Nested tables are dicts of the same form; lists of tables use a one-element list.
SCHEMA: dict = {
    "schema": (_I, True), "name": (_S, True), "version": (_S, True), "task": (_S, True),
    "description": (_S, True),
    "source": ({"wheel": (_S, False), "member": (_S, True), "sha256": (_S, True), "size_bytes": (_I, True),
                "licence": (_S, True), "upstream": (_S, True), "sparse": (_B, True),
                "kind": (_S, False), "package": (_S, False), "recipe": (_S, False), "teacher": (_S, False),
                "files": ([{"member": (_S, True), "sha256": (_S, True), "size_bytes": (_I, True)}], False)},
               True),
    "inputs": ([{"name": (_S, True), "shape": (_L, True), "dtype": (_S, True), "layout": (_S, True),
                 "range": (_L, True), "preprocessing": (_S, True)}], True),
    "outputs": ([{"name": (_S, True), "shape": (_L, True), "dtype": (_S, True), "meaning": (_S, True)}], True),
    "calibration": ({"metric": (_S, True), "input_size": (_I, True), "norm": (_S, True),
                     "calib_samples": (_I, True), "heldout_samples": (_I, True), "golden_samples": (_I, True),
                     "tflite_int8_samples": (_I, True), "description": (_S, True)}, True),
    "quantization": ({"keep_first_convs": (_I, True), "int8_gate": (_D, True), "notes": (_S, False),
                      "ignored_scope": (IGNORED_SCOPE, False), "int8_output_offset": (_D, False)}, True),
    # [bf16]: the OpenVINO `bf16` artefact (producer ov_bf16) runs in bf16 on CPUs that have it, but for the
    # layers of fp32_scope (same selectors as ignored_scope), which stay f32. default_on_bf16_cpus: "default"
    # means bf16 on such CPUs (edge.backends.auto), for the measured `reason`; [defaults.openvino] elsewhere.
    "bf16": ({"fp32_scope": (IGNORED_SCOPE, False), "note": (_S, False), "default_on_bf16_cpus": (_B, False),
              "reason": (_S, False)}, False),
    "verify": ({"fp32_atol": (_F, True), "fp32_rtol": (_F, True), "output_atol": (_D, False),
                "note": (_S, False)}, True),
    # one entry per backend that has artefacts (checked in validate)
    "defaults": ({b: ({"precision": (_S, True), "reason": (_S, True)}, False) for b in BACKENDS}, True),
    "artifacts": ([{"backend": (_S, True), "precision": (_S, True), "format": (_S, True), "file": (_S, True),
                    "producer": (_S, True), "report_only": (_B, False), "note": (_S, False)}], True),
    # [[unsuited]]: device features this model was measured to serve badly; `config` is the dotted path of a device
    # config section (e.g. "analytics.shelves") that, when set, makes `edge doctor` and `edge run` warn with `reason`
    "unsuited": ([{"config": (_S, True), "reason": (_S, True)}], False),
}
# [tolerance.<precision>]: golden-parity tolerance; `outputs` maps an output name to its own {max_err, mean_err}.
_TOL_OUTPUT = {"max_err": (_F, True), "mean_err": (_F, True)}
_TOL_PRECISION = {**_TOL_OUTPUT, "outputs": (_D, False), "note": (_S, False)}
TOLERANCE_SCHEMA = {p: (_TOL_PRECISION, False) for p in PRECISIONS}
SCHEMA["tolerance"] = (TOLERANCE_SCHEMA, False)


def _check(obj: dict, schema: dict, where: str, path: str) -> None:
    for k in obj:
        if k not in schema:
            raise ManifestError(f"{where}: {path}{k}: unknown key (allowed: {', '.join(sorted(schema))})")
    for k, (typ, required) in schema.items():
        key = f"{path}{k}"
        if k not in obj:
            if required:
                raise ManifestError(f"{where}: {key}: required key is missing")
            continue
        v = obj[k]
        if isinstance(typ, dict):
            if not isinstance(v, dict):
                raise ManifestError(f"{where}: {key}: expected a table, got {type(v).__name__}")
            _check(v, typ, where, key + ".")
        elif isinstance(typ, list):
            if not isinstance(v, list) or not v or not all(isinstance(x, dict) for x in v):
                raise ManifestError(f"{where}: {key}: expected a non-empty array of tables")
            for i, x in enumerate(v):
                _check(x, typ[0], where, f"{key}[{i}].")
        elif typ is _F:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ManifestError(f"{where}: {key}: expected a number, got {v!r}")
        elif not isinstance(v, typ) or (typ is _I and isinstance(v, bool)):
            raise ManifestError(f"{where}: {key}: expected {typ.__name__}, got {type(v).__name__} {v!r}")


def _check_errs(t: dict, where: str, key: str) -> None:
    for k in ("max_err", "mean_err"):
        if not 0 <= t[k] < math.inf:
            raise ManifestError(f"{where}: {key}.{k}: must be a finite number >= 0, got {t[k]!r}")


def check_tolerance(table: object, where: str, outputs: set[str] | None = None) -> dict:
    """Validate a `tolerance` table (precision -> max_err, mean_err, optional per-output overrides).

    outputs: the model's output names, when known; an override for another name is an error. Returns the table.
    """
    if not isinstance(table, dict):
        raise ManifestError(f"{where}: tolerance: expected a table, got {type(table).__name__}")
    _check(table, TOLERANCE_SCHEMA, where, "tolerance.")
    for p, t in table.items():
        _check_errs(t, where, f"tolerance.{p}")
        for name, o in t.get("outputs", {}).items():
            key = f"tolerance.{p}.outputs.{name}"
            if outputs is not None and name not in outputs:
                raise ManifestError(f"{where}: {key}: no output {name!r} (outputs: {', '.join(sorted(outputs))})")
            if not isinstance(o, dict):
                raise ManifestError(f"{where}: {key}: expected a table, got {type(o).__name__}")
            _check(o, _TOL_OUTPUT, where, key + ".")
            _check_errs(o, where, key)
    return table


def _check_source(s: dict, where: str) -> None:
    """kind "wheel" (default): `wheel` + `member`; kind "npm": `package` (name@version), `member` (model.json),
    `files` (weight shards, each with its sha256) and the conversion `recipe`; kind "trained": `member` (the
    committed ONNX file in models/trained/<name>/) and `teacher` (the model it was distilled from, whose
    calibration sets it uses)."""
    kind = s.get("kind", "wheel")
    if kind not in SOURCE_KINDS:
        raise ManifestError(f"{where}: source.kind: {kind!r} not in {SOURCE_KINDS}")
    need = {"wheel": ("wheel",), "npm": ("package", "files", "recipe"), "trained": ("teacher",)}[kind]
    for k in need:
        if k not in s:
            raise ManifestError(f"{where}: source.{k}: required for source.kind = {kind!r}")
    if kind == "npm":
        if not re.fullmatch(r"(@[a-z0-9._-]+/)?[a-z0-9._-]+@[0-9][0-9A-Za-z.+-]*", s["package"]):
            raise ManifestError(f"{where}: source.package: {s['package']!r} must be name@exact-version")
        if s["recipe"] not in RECIPES:
            raise ManifestError(f"{where}: source.recipe: {s['recipe']!r} not in {RECIPES}")
        for i, f in enumerate(s["files"]):
            if not re.fullmatch(r"[0-9a-f]{64}", f["sha256"]):
                raise ManifestError(f"{where}: source.files[{i}].sha256: not a 64-hex-digit sha256")
    if kind == "trained":
        if "/" in s["member"] or not s["member"].endswith(".onnx"):
            raise ManifestError(f"{where}: source.member: {s['member']!r} must be the bare name of the committed "
                                ".onnx file in models/trained/<name>/")
        for k in ("wheel", "package", "recipe", "files"):
            if k in s:
                raise ManifestError(f"{where}: source.{k}: not used by source.kind = 'trained' (remove it)")


def validate(m: dict, where: str = "<manifest>") -> dict:
    """Schema plus cross-field checks. Returns the manifest unchanged."""
    _check(m, SCHEMA, where, "")
    if m["schema"] != 1:
        raise ManifestError(f"{where}: schema: unsupported schema version {m['schema']} (expected 1)")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", m["name"]):
        raise ManifestError(f"{where}: name: {m['name']!r} must be lower_snake_case")
    if not VERSION_RE.fullmatch(m["version"]):
        raise ManifestError(f"{where}: version: {m['version']!r} must be 1-64 of A-Z a-z 0-9 . _ + - not starting "
                            "with a symbol, e.g. '0.10.21-r1' (it names the folder <cache>/models/<name>/<version>/)")
    if not re.fullmatch(r"[0-9a-f]{64}", m["source"]["sha256"]):
        raise ManifestError(f"{where}: source.sha256: not a 64-hex-digit sha256")
    _check_source(m["source"], where)
    if m["calibration"]["metric"] not in METRICS:
        raise ManifestError(f"{where}: calibration.metric: {m['calibration']['metric']!r} not in {METRICS}")
    if m["calibration"]["norm"] not in ("zero_one", "minus_one_one"):
        raise ManifestError(f"{where}: calibration.norm: must be 'zero_one' or 'minus_one_one'")
    for k in ("input_size", "calib_samples", "heldout_samples", "golden_samples", "tflite_int8_samples"):
        if m["calibration"][k] < 1:
            raise ManifestError(f"{where}: calibration.{k}: must be >= 1, got {m['calibration'][k]}")
    if m["quantization"]["keep_first_convs"] < 0:
        raise ManifestError(f"{where}: quantization.keep_first_convs: must be >= 0, got "
                            f"{m['quantization']['keep_first_convs']}")
    seen, files = set(), {}
    for i, a in enumerate(m["artifacts"]):
        key = f"artifacts[{i}]"
        if a["backend"] not in BACKENDS:
            raise ManifestError(f"{where}: {key}.backend: {a['backend']!r} not in {BACKENDS}")
        if a["precision"] not in PRECISIONS:
            raise ManifestError(f"{where}: {key}.precision: {a['precision']!r} not in {PRECISIONS}")
        if a["format"] not in FORMATS:
            raise ManifestError(f"{where}: {key}.format: {a['format']!r} not in {tuple(FORMATS)}")
        if not a["file"].endswith(FORMATS[a["format"]]) or "/" in a["file"]:
            raise ManifestError(f"{where}: {key}.file: {a['file']!r} must be a bare file name ending "
                                f"{FORMATS[a['format']]}")
        if a["producer"] not in PRODUCERS:
            raise ManifestError(f"{where}: {key}.producer: {a['producer']!r} not in {PRODUCERS}")
        if (a["backend"], a["precision"]) in seen:
            raise ManifestError(f"{where}: {key}: duplicate artefact for {a['backend']} × {a['precision']}")
        seen.add((a["backend"], a["precision"]))
        if a["file"] in files:  # one would overwrite the other in the model's folder
            raise ManifestError(f"{where}: {key}.file: {a['file']!r} is already the file of "
                                f"artifacts[{files[a['file']]}]; give each artefact its own file name")
        files[a["file"]] = i
    no_default = sorted({b for b, _ in seen} - set(m["defaults"]))
    if no_default:
        b = no_default[0]
        raise ManifestError(f"{where}: defaults.{b}: required key is missing (the manifest has {b} artefacts)")
    for b, d in m["defaults"].items():
        if (b, d["precision"]) not in seen:
            raise ManifestError(f"{where}: defaults.{b}.precision: {d['precision']!r} has no artefact for {b}")
    outputs = [o["name"] for o in m["outputs"]]
    _check_verify(m["verify"], where, outputs)
    if "tolerance" in m:
        check_tolerance(m["tolerance"], where, set(outputs))
    if "ignored_scope" in m["quantization"]:
        _check_ignored_scope(m["quantization"]["ignored_scope"], where, outputs)
    _check_bf16(m, where, outputs)
    for i, u in enumerate(m.get("unsuited", [])):
        if not re.fullmatch(r"[a-z_]+(\.[a-z_]+)*", u["config"]):
            raise ManifestError(f"{where}: unsuited[{i}].config: {u['config']!r} must be a dotted device-config path "
                                "such as 'analytics.shelves'")
    if "int8_output_offset" in m["quantization"]:
        _check_output_offset(m["quantization"]["int8_output_offset"], where, outputs)
    return m


def _check_verify(v: dict, where: str, outputs: list[str]) -> None:
    """[verify] (the build's FP32 parity gate): fp32_atol, fp32_rtol and the output_atol overrides are finite numbers
    >= 0 (inf would pass any conversion), and each override names an output of the model."""
    for k in ("fp32_atol", "fp32_rtol"):
        if not 0 <= v[k] < math.inf:
            raise ManifestError(f"{where}: verify.{k}: must be a finite number >= 0, got {v[k]!r}")
    for name, t in v.get("output_atol", {}).items():
        key = f"verify.output_atol.{name}"
        if name not in outputs:
            raise ManifestError(f"{where}: {key}: not an output of the model (outputs: {', '.join(outputs)})")
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t < math.inf:
            raise ManifestError(f"{where}: {key}: must be a finite number >= 0, got {t!r}")


OUTPUT_OFFSET_MAX = 1.0  # logits: a larger correction is not a calibration any more


def _check_output_offset(offsets: dict, where: str, outputs: list[str]) -> None:
    """[quantization] int8_output_offset = { <output> = <float> }: logits the OpenVINO `int8` artefact adds to those
    outputs (in front of the Sigmoid where the output is probabilities; e.g. a detector's scores, which INT8 biases
    low); |offset| <= OUTPUT_OFFSET_MAX."""
    key = "quantization.int8_output_offset"
    if not offsets:
        raise ManifestError(f"{where}: {key}: empty; name an output and its offset, e.g. {{ Identity_1 = 0.2 }}, "
                            "or remove the key")
    for name, v in offsets.items():
        if name not in outputs:
            raise ManifestError(f"{where}: {key}.{name}: not an output of the model (outputs: {', '.join(outputs)})")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or abs(v) > OUTPUT_OFFSET_MAX:
            raise ManifestError(f"{where}: {key}.{name}: expected a number within ±{OUTPUT_OFFSET_MAX}, got {v!r}")


def _check_bf16(m: dict, where: str, outputs: list[str]) -> None:
    """bf16 artefacts are OpenVINO IRs made by ov_bf16 and need the `[bf16]` table, and the table needs one; without
    fp32_scope every layer runs in bf16."""
    arts = [(i, a) for i, a in enumerate(m["artifacts"]) if a["producer"] == "ov_bf16" or a["precision"] == "bf16"]
    for i, a in arts:
        if (a["producer"], a["backend"], a["precision"], a["format"]) != ("ov_bf16", "openvino", "bf16", "openvino"):
            raise ManifestError(f"{where}: artifacts[{i}]: bf16 artefacts are made by producer 'ov_bf16' for backend "
                                f"'openvino' (format 'openvino'), got {a['producer']!r} / {a['backend']!r} / "
                                f"{a['format']!r}")
    if arts and "bf16" not in m:
        raise ManifestError(f"{where}: bf16: required by the bf16 artefact: add a [bf16] table with the layers that "
                            "stay f32 (fp32_scope) and a note saying why")
    if "bf16" in m and not arts:
        raise ManifestError(f"{where}: bf16: no artefact uses it; add an openvino/bf16 artefact (producer "
                            "'ov_bf16') or remove the table")
    if "fp32_scope" in m.get("bf16", {}):
        _check_ignored_scope(m["bf16"]["fp32_scope"], where, outputs, "bf16.fp32_scope")
    if m.get("bf16", {}).get("default_on_bf16_cpus") and not m["bf16"].get("reason"):
        raise ManifestError(f"{where}: bf16.reason: required with default_on_bf16_cpus = true: say what was measured "
                            "(accuracy vs FP32, speed) that makes bf16 the default on CPUs with native bf16")


def _check_ignored_scope(scope: dict, where: str, outputs: list[str], key: str = "quantization.ignored_scope") -> None:
    """first_convs >= 0; head_convs (a list) and branches (a list of lists) name outputs of the model; at least one
    selector."""
    if scope.get("first_convs", 0) < 0:
        raise ManifestError(f"{where}: {key}.first_convs: must be >= 0, got {scope['first_convs']}")
    groups = scope.get("branches", [])
    if not all(isinstance(g, list) and g for g in groups):
        raise ManifestError(f"{where}: {key}.branches: expected a list of output-name lists, e.g. "
                            "[[\"Identity\", \"Identity_1\"]], got {groups!r}")
    for k, names in [("head_convs", scope.get("head_convs", []))] + [("branches", g) for g in groups]:
        for name in names:
            if name not in outputs:
                raise ManifestError(f"{where}: {key}.{k}: {name!r} is not an output of the model "
                                    f"(outputs: {', '.join(outputs)})")
    if not (scope.get("first_convs") or scope.get("head_convs") or scope.get("branches") or scope.get("upsampling")):
        raise ManifestError(f"{where}: {key}: selects nothing; set first_convs, head_convs, branches or upsampling "
                            "(or remove the table)")


def source_file_name(m: dict) -> str:
    """The upstream source file's name in the model's folder: its first artefact (the chain's `source` step)."""
    return m["artifacts"][0]["file"]


def load(path: str | Path) -> dict:
    path = Path(path)
    try:
        with open(path, "rb") as f:
            m = tomllib.load(f)
    except FileNotFoundError:
        raise ManifestError(f"{path}: manifest not found") from None
    except tomllib.TOMLDecodeError as e:
        raise ManifestError(f"{path}: not valid TOML: {e}") from None
    validate(m, str(path))
    if m["name"] != path.stem:
        raise ManifestError(f"{path}: name: {m['name']!r} must match the file name {path.stem!r}")
    return m


def load_all(directory: Path | None = None) -> dict[str, dict]:
    """Every manifest in `directory` (default: the committed ones, MANIFEST_DIR), by model name."""
    return {p.stem: load(p) for p in sorted((directory or MANIFEST_DIR).glob("*.toml"))}
