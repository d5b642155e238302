"""Which precision a device gets and why: CPU class from /proc/cpuinfo (edge.backends.auto), QAT INT8 only where
the CPU accumulates INT8 in 32 bits, and `edge doctor` saying so (its --cpuinfo judges another device's CPU)."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge.backends import auto

X86 = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat mmx fxsr sse sse2 ssse3 sse4_1 sse4_2 popcnt"
CPUINFO = {  # first-processor excerpts of real /proc/cpuinfo files
    "avx2": ("Intel(R) Core(TM) i5-8500 CPU @ 3.00GHz", f"{X86} avx f16c fma bmi1 avx2 bmi2"),
    "avx512_vnni": ("Intel(R) Xeon(R) Gold 6230 CPU @ 2.10GHz",
                    f"{X86} avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"),
    "avx_vnni": ("12th Gen Intel(R) Core(TM) i7-1260P", f"{X86} avx fma avx2 avx_vnni"),
    "amx": ("Intel(R) Xeon(R) Platinum 8480+", f"{X86} avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8"),
    "x86_old": ("Intel(R) Atom(TM) CPU E3845", X86),
}
ARM = {"arm_dotprod": "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop "
                      "asimddp",  # Cortex-A76 (Raspberry Pi 5)
       "arm": "fp asimd evtstrm crc32 cpuid"}  # Cortex-A72 (Raspberry Pi 4)


def _x86(cls: str) -> str:
    model, flags = CPUINFO[cls]
    return f"processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\nflags\t\t: {flags}\n\n"


def _arm(cls: str) -> str:
    return f"processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: {ARM[cls]}\nCPU implementer\t: 0x41\n\n"


SAMPLES = {**{c: _x86(c) for c in CPUINFO}, **{c: _arm(c) for c in ARM}, "unknown": "processor\t: 0\n"}


@pytest.mark.parametrize("cls", sorted(SAMPLES))
def test_cpu_class_from_cpuinfo(cls):
    flags = auto.cpu_flags(SAMPLES[cls])
    assert auto.cpu_class(flags) == cls
    ok, why = auto.int8_qat_supported(cls)
    assert ok == (cls in ("amx", "avx512_vnni", "avx_vnni", "arm_dotprod", "arm"))
    assert auto.CPU_CLASSES[cls] in why and (ok or "not used" in why)


def test_this_machine_class_matches_its_cpuinfo():
    text = Path("/proc/cpuinfo").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith(("flags", "Features")))
    flags = set(line.split(":", 1)[1].split())
    assert auto.cpu_flags() == flags
    want = ("amx" if "amx_int8" in flags else "avx512_vnni" if "avx512_vnni" in flags else
            "avx_vnni" if "avx_vnni" in flags else "avx2" if "avx2" in flags else None)
    if "asimd" not in flags:
        assert auto.cpu_class(flags) == want


@pytest.mark.parametrize("cls", sorted(SAMPLES))
def test_runs_as_built_per_backend_and_cpu(cls):
    """The one rule the loader (auto._precision) and `edge bench pose` (runs_as_built_on_this_cpu) share."""
    flags = auto.cpu_flags(SAMPLES[cls])
    qat = cls in ("amx", "avx512_vnni", "avx_vnni", "arm_dotprod", "arm")
    for backend in ("openvino", "onnxruntime"):
        assert auto.runs_as_built(backend, "int8_qat", auto.cpu_class(flags), flags)[0] == qat
    assert auto.runs_as_built("tflite", "int8_qat", auto.cpu_class(flags), flags) == (True, "")  # TFLite: any CPU
    ok, why = auto.runs_as_built("openvino", "bf16", None, flags)
    assert ok == (cls == "amx") and ("native bf16" in why)
    for precision in ("fp32", "int8", "int8_full"):
        assert auto.runs_as_built("openvino", precision, auto.cpu_class(flags), flags) == (True, "")


def test_qat_int8_is_not_loaded_on_avx2(zoo, monkeypatch, caplog):
    from edge.app.config import ModelRef

    real = auto.cpu_flags
    ref = ModelRef(name="pose_landmark_full", backend="openvino", precision="int8_qat", threads=1)
    monkeypatch.setattr(auto, "cpu_flags", lambda cpuinfo=None: real(SAMPLES["avx512_vnni"]))  # whatever CPU runs this
    assert auto.open_model(zoo, ref).info.path.endswith("pose_landmark_full_int8_qat.xml")
    monkeypatch.setattr(auto, "cpu_flags", lambda cpuinfo=None: real(SAMPLES["avx2"]))
    with caplog.at_level(logging.WARNING, logger="edge.backends.auto"):
        s = auto.open_model(zoo, ref)
    assert s.info.path.endswith("pose_landmark_full_fp32.xml") and s.info.precision == "fp32"
    assert "int8_qat not used on this CPU" in caplog.text and "AVX2 only (no VNNI)" in caplog.text
    tfl = auto.open_model(zoo, ModelRef(name="pose_landmark_full", backend="tflite", precision="int8_qat",
                                        threads=1))  # TFLite's own INT8 of the QAT weights: any CPU
    assert tfl.info.path.endswith("pose_landmark_full_int8_qat.tflite") and tfl.info.precision == "int8_qat"


def _cfg(tmp_path, landmarks: dict) -> Path:
    p = tmp_path / "dev.toml"
    lm = "".join(f'{k} = "{v}"\n' for k, v in landmarks.items())
    p.write_text('[device]\nid = "shelf-01"\nstore = "s001"\nkind = "shelf-camera"\n[tryon]\nenabled = false\n'
                 f'[models.pose_landmarks]\n{lm}')
    return p


def _rows(report: list[dict], name: str) -> dict[str, dict]:
    """A model's rows by backend; the per-model summary rows (backend "*") by "*" + the precision they are about."""
    return {r["backend"] + (r["requested"] if r["backend"] == "*" else ""): r for r in report
            if r.get("name") == name}


@pytest.mark.parametrize("cls", ["avx2", "avx512_vnni", "arm_dotprod"])
def test_doctor_precisions_per_cpu_class(zoo, tmp_path, cls):
    from edge.app.config import load_config
    from edge.app.doctor import check_cpu, check_precisions

    cpu = check_cpu(SAMPLES[cls])
    assert cpu["class"] == cls and cpu["int8_qat"]["used"] == (cls != "avx2")
    cfg = load_config(_cfg(tmp_path, {"name": "pose_landmark_full", "backend": "openvino",
                                      "precision": "int8_qat"}))
    rep = check_precisions(cfg, ["onnxruntime", "openvino", "tflite"], cpu)
    lmk = _rows(rep, "pose_landmark_full")
    if cls == "avx2":
        assert lmk["openvino"]["precision"] == "fp32"
        assert lmk["openvino"]["why"].startswith("int8_qat asked for, fp32 used: AVX2 only (no VNNI)")
        assert lmk["*int8_qat"]["precision"] is None and "QAT INT8 is not used" in lmk["*int8_qat"]["why"]
    else:
        assert lmk["openvino"]["precision"] == "int8_qat" and lmk["openvino"]["built"]
        assert "runs as trained" in lmk["openvino"]["why"] and lmk["*int8_qat"]["precision"] == "int8_qat"
    det = _rows(rep, "pose_detection")  # backend auto: every usable backend, the manifest's measured reason
    assert set(det) == {"onnxruntime", "openvino", "tflite"} and all(r["auto"] for r in det.values())
    for b, r in det.items():
        d = zoo.manifest("pose_detection")["defaults"][b]
        assert r["precision"] == d["precision"]
        # an INT8 default also says what this CPU class makes of INT8
        assert r["why"] == f"manifest default: {d['reason']}" + (
            f"; CPU: {cpu['int8_note']}" if d["precision"].startswith("int8") else "")
    assert det["openvino"]["precision"] == "int8"  # the detector's gate holds on OpenVINO (issue 11)


def test_doctor_on_a_student_device(zoo, tmp_path):
    """The student, selected per device: FP32 with its measured reason; no TFLite artefact, said so."""
    from edge.app.config import load_config
    from edge.app.doctor import check_cpu, check_precisions

    cfg = load_config(_cfg(tmp_path, {"name": "pose_landmark_student"}))
    rows = _rows(check_precisions(cfg, ["onnxruntime", "openvino", "tflite"], check_cpu()), "pose_landmark_student")
    assert rows["openvino"]["precision"] == rows["onnxruntime"]["precision"] == "fp32"
    assert "0.074" in rows["openvino"]["why"] and "not met" in rows["openvino"]["why"]
    assert rows["tflite"]["precision"] is None and "no default precision for backend 'tflite'" in rows["tflite"]["why"]


def test_edge_doctor_cli_says_qat_is_not_used_on_avx2(zoo, tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text(SAMPLES["avx2"])
    cfg = _cfg(tmp_path, {"name": "pose_landmark_full", "backend": "openvino", "precision": "int8_qat"})
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", "--config", str(cfg), "--cpuinfo", str(info),
                        "--egl-timeout", "0.001"], capture_output=True, text=True, timeout=180, env=dict(os.environ))
    out = r.stdout
    assert "class: AVX2 only (no VNNI)" in out and "i5-8500" in out, out
    section = out.split("\nprecision:", 1)[1].splitlines()
    line = next(ln for ln in section if ln.split()[:2] == ["pose_landmark_full", "openvino"])
    assert line.split()[2] == "fp32" and "int8_qat asked for, fp32 used" in line
    assert any(ln.split()[:3] == ["pose_landmark_full", "*", "not"] and "QAT INT8 is not used" in ln
               for ln in section), out
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", "--cpuinfo", str(tmp_path / "nope"),
                        "--egl-timeout", "0.001", "--json", "-"], capture_output=True, text=True, timeout=180)
    rep = json.loads(r.stdout)
    assert r.returncode == 1 and any("--cpuinfo" in p and "/proc/cpuinfo" in p for p in rep["problems"])


def test_doctor_names_an_arm_board_as_the_choice_cache_does():
    """64-bit ARM kernels have no `model name`: the doctor names the board and cores the way the auto choice cache
    keys them (edge.backends.auto.cpu_model), not with an empty string."""
    from edge.app.doctor import check_cpu
    from edge.backends.auto import cpu_model

    text = SAMPLES["arm_dotprod"] + "CPU part\t: 0xd0b\n\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n"
    assert check_cpu(text)["model"] == cpu_model(text) == "Raspberry Pi 5 Model B Rev 1.0, CPU part 0xd0b"
    assert check_cpu(SAMPLES["avx2"])["model"] == CPUINFO["avx2"][0]
