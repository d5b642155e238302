"""Bad model files and missing backends give clear errors, in-process, never a crash.

Every case loads in this process: a segfault in a runtime would kill the test run, which is the point.
"""
from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from edge.backends import BackendError, ModelLoadError, available_backends, get_backend, load_session
from edge.backends import registry

# backend -> model file kinds it loads
LOADS = {"tflite": ("tflite",), "openvino": ("tflite", "ir", "onnx"), "onnxruntime": ("onnx",)}
CASES = [(b, k) for b, kinds in LOADS.items() for k in kinds]


def _copy(model_files, kind, dst_dir, name="pose_detection"):
    src = model_files[name, kind]
    dst = dst_dir / src.name
    shutil.copyfile(src, dst)
    if kind == "ir":
        shutil.copyfile(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    return dst


def _assert_clear(exc: BaseException, backend: str, path) -> None:
    msg = str(exc)
    assert msg.startswith(f"{backend}:"), msg
    assert str(path) in msg, msg


@pytest.mark.parametrize("backend,kind", CASES)
@pytest.mark.parametrize("keep", [0.999, 0.5, 0.01])
def test_truncated_file(model_files, tmp_path, backend, kind, keep):
    p = _copy(model_files, kind, tmp_path)
    target = p.with_suffix(".bin") if kind == "ir" and keep != 0.01 else p  # IR: cut the weights, or the xml
    data = target.read_bytes()
    target.write_bytes(data[: max(1, int(len(data) * keep))])
    with pytest.raises(ModelLoadError) as ei:
        load_session(backend, p)
    _assert_clear(ei.value, backend, p)
    assert "truncated" in str(ei.value) or "corrupt" in str(ei.value)


@pytest.mark.parametrize("backend,kind", CASES)
def test_garbage_after_a_valid_header(model_files, tmp_path, backend, kind):
    p = _copy(model_files, kind, tmp_path)
    data = bytearray(p.read_bytes())
    n = min(len(data) - 64, 1 << 16)
    data[16:16 + n] = np.random.default_rng(7).integers(0, 256, n, dtype=np.uint8).tobytes()
    p.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError) as ei:
        load_session(backend, p)
    _assert_clear(ei.value, backend, p)


@pytest.mark.parametrize("backend,kind,expect", [
    ("tflite", "onnx", "is an ONNX protobuf, this backend needs a TFLite flatbuffer"),
    ("tflite", "ir", "is an OpenVINO IR"),
    ("onnxruntime", "tflite", "is a TFLite flatbuffer, this backend needs an ONNX protobuf"),
    ("onnxruntime", "ir", "is an OpenVINO IR"),
])
def test_wrong_format(model_files, backend, kind, expect):
    p = model_files["pose_detection", kind]
    with pytest.raises(ModelLoadError) as ei:
        load_session(backend, p)
    _assert_clear(ei.value, backend, p)
    assert expect in str(ei.value)


@pytest.mark.parametrize("backend", list(LOADS))
def test_not_a_model_empty_and_missing(tmp_path, backend):
    junk = tmp_path / "model.tflite"
    junk.write_text("this is not a model\n" * 100)
    with pytest.raises(ModelLoadError, match="of no known model format"):
        load_session(backend, junk)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match=f"^{backend}: model file is empty"):
        load_session(backend, empty)
    with pytest.raises(ModelLoadError, match=f"^{backend}: model file not found"):
        load_session(backend, tmp_path / "nope.xml")


def test_ir_without_its_bin(model_files, tmp_path):
    p = _copy(model_files, "ir", tmp_path)
    p.with_suffix(".bin").unlink()
    with pytest.raises(ModelLoadError, match=r"^openvino: .*weights file .*\.bin is missing"):
        load_session("openvino", p)


def test_missing_backend_is_named(monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "hailo", "edge.backends.hailo_backend:HailoBackend")
    with pytest.raises(BackendError, match=r"backend 'hailo' is not usable here: .*hailo_backend.*ModuleNotFound"):
        get_backend("hailo")
    ok, why = available_backends()["hailo"]
    assert not ok and "hailo" in why
    with pytest.raises(BackendError, match=r"unknown backend 'tensorrt'"):
        get_backend("tensorrt")


def test_missing_tflite_runtime_is_named(model_files, monkeypatch):
    """Asking for tflite-runtime (the fallback) where it does not import names it. Its absence is simulated
    (None in sys.modules makes the import fail), so this holds whether or not the `tflite-runtime` extra is
    installed."""
    for mod in ("tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(BackendError, match=r"^tflite: no TFLite runtime imports \(tflite-runtime: "
                                           r"ModuleNotFoundError: .*tflite_runtime"):
        get_backend("tflite", {"runtime": "tflite-runtime"}).load(model_files["pose_detection", "tflite"])


def test_bad_options_and_feeds(model_files):
    with pytest.raises(BackendError, match=r"backend 'onnxruntime': invalid options.*intra_op_thread"):
        get_backend("onnxruntime", {"intra_op_thread": 2})  # typo: unknown keys are errors
    with pytest.raises(BackendError, match=r"onnxruntime: execution provider\(s\) \['TensorrtExecutionProvider'\]"):
        get_backend("onnxruntime", {"providers": ["TensorrtExecutionProvider"]}).load(
            model_files["pose_detection", "onnx"])
    with pytest.raises(BackendError, match=r"openvino: device 'NPU' not available"):
        get_backend("openvino", {"device": "NPU"}).load(model_files["pose_detection", "tflite"])
    for backend, kind in [("tflite", "tflite"), ("openvino", "ir"), ("onnxruntime", "onnx")]:
        s = load_session(backend, model_files["pose_detection", kind])
        with pytest.raises(BackendError, match=r"input 'input_1' has shape \(1, 256, 256, 3\), model expects"):
            s.run({"input_1": np.zeros((1, 256, 256, 3), np.float32)})
        with pytest.raises(BackendError, match=r"feeds \['image'\] != inputs \['input_1'\]"):
            s.run({"image": np.zeros((1, 224, 224, 3), np.float32)})


def test_tflite_fallback_order_and_no_runtime_at_all(monkeypatch, model_files):
    """auto tries ai-edge-litert, then tflite-runtime; with neither importable the error names both."""
    from edge.backends import tflite_backend as tb

    # ai-edge-litert "missing": the fallback slot (played by the installed interpreter module) is used
    monkeypatch.setattr(tb, "RUNTIMES", {"ai-edge-litert": ("ai_edge_litert_absent.interpreter", "ai-edge-litert"),
                                         "tflite-runtime": ("ai_edge_litert.interpreter", "ai-edge-litert")})
    s = load_session("tflite", model_files["pose_detection", "tflite"])
    assert s.run({"input_1": np.zeros((1, 224, 224, 3), np.float32)})["Identity"].shape == (1, 2254, 12)
    monkeypatch.setattr(tb, "RUNTIMES", {"ai-edge-litert": ("ai_edge_litert_absent.interpreter", "ai-edge-litert"),
                                         "tflite-runtime": ("tflite_runtime_absent.interpreter", "tflite-runtime")})
    ok, why = available_backends()["tflite"]
    assert not ok and "ai-edge-litert: ModuleNotFoundError" in why and "tflite-runtime: ModuleNotFoundError" in why
    with pytest.raises(BackendError, match=r"^backend 'tflite' is not usable here: tflite: no TFLite runtime"):
        load_session("tflite", model_files["pose_detection", "tflite"])
