"""INT8 artefacts through the backends: int8-I/O TFLite is quantized/dequantized inside the session."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge.backends import ModelLoadError, load_session
from edge.backends.parity import check, tolerance_for

DET = "pose_detection"


@pytest.fixture(scope="module")
def det_int8(zoo):
    """The detector's INT8 artefacts (tflite int8-I/O from ai-edge-quantizer, OpenVINO NNCF, ORT QDQ)."""
    from models.zoo import ModelNotBuilt

    try:
        return {b: zoo.artifact(DET, b, "int8") for b in ("tflite", "openvino", "onnxruntime")}
    except ModelNotBuilt:
        r = subprocess.run([sys.executable, "-m", "edge.app.cli", "models", "build", "--only", DET, "--no-progress"],
                           capture_output=True, text=True, timeout=3600)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        return {b: zoo.artifact(DET, b, "int8") for b in ("tflite", "openvino", "onnxruntime")}


def test_int8_io_tflite_is_float_outside(zoo, det_int8):
    s = load_session("tflite", det_int8["tflite"].path, precision="int8")
    assert s.info.extra["int8_io"] is True and s.info.precision == "int8"
    assert s.inputs[0].dtype == "int8"  # the model tensor; the session takes float32
    inputs, golden = zoo.golden(DET)
    out = s.run({"input_1": inputs["input_1"][:1]})
    assert {k: v.dtype for k, v in out.items()} == {"Identity": np.float32, "Identity_1": np.float32}
    ok, errs, why = check(s, inputs, golden, tolerance_for(zoo.manifest(DET), "int8"))
    assert ok, why
    # dequantization really happened: box outputs are in pixels (hundreds), not int8 codes
    assert np.abs(out["Identity"]).max() > 127


@pytest.mark.parametrize("backend", ["openvino", "onnxruntime"])
def test_int8_float_io_backends_pass_int8_tolerance(zoo, det_int8, backend):
    s = load_session(backend, det_int8[backend].path, precision="int8")
    inputs, golden = zoo.golden(DET)
    ok, errs, why = check(s, inputs, golden, tolerance_for(zoo.manifest(DET), "int8"))
    assert ok, why
    assert not check(s, inputs, golden, tolerance_for(zoo.manifest(DET), "fp32"))[0]  # INT8 is not FP32-close


def test_openvino_on_an_int8_io_tflite_gives_a_clear_error(det_int8):
    p = det_int8["tflite"].path
    with pytest.raises(ModelLoadError) as ei:
        load_session("openvino", p)
    assert str(ei.value).startswith(f"openvino: cannot load {p}:")
