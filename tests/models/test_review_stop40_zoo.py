"""Second-look findings in runtime model loading: a signed built.json of another model or version accepted for this
one, a configured public key that is missing turning signature checks off, integer feeds silently cast to float,
threads below 1 blamed on the model file (or silently meaning "all cores"), and a golden set without samples
crashing `auto` with an IndexError. Real model files and runtimes; damaged copies live in a throw-away cache signed
with its own key."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.app.config import ModelRef
from edge.backends import BackendError, load_session
from edge.backends.auto import open_model
from models import sign
from models.golden import GoldenError, load_golden
from models.zoo import ModelCorrupt, ModelZoo

FACE = "face_detection_full_range"
FULL, LITE = "hand_landmark_full", "hand_landmark_lite"
FIX = "edge models build"
BACKENDS = ("onnxruntime", "openvino", "tflite")


def _copy_into(zoo, src_name: str, cache: Path, dst_name: str | None = None, version: str | None = None) -> Path:
    """src_name's built folder copied into cache as dst_name's folder `version` (default: its own), built.json
    re-signed unchanged with cache's dev key."""
    src = zoo.model_dir(src_name)
    dst = cache / "models" / (dst_name or src_name) / (version or zoo.model_dir(dst_name or src_name).name)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    payload = json.loads((dst / "built.json").read_text())["payload"]
    sign.write_signed(dst / "built.json", payload, sign.signing_key(cache))
    return dst


def _ref(name: str, backend: str = "onnxruntime") -> ModelRef:
    return ModelRef(name=name, backend=backend, precision="fp32", threads=1)


# ------------------------------------------------------------------ what built.json was signed for

def test_signed_built_json_of_another_model_is_refused(zoo, tmp_path):
    """hand_landmark_lite's folder (signed, same tensors) in hand_landmark_full's place loaded as the full model:
    the signature said who signed it, never for which model."""
    cache = tmp_path / "cache"
    d = _copy_into(zoo, LITE, cache, FULL)
    z = ModelZoo(cache)
    with pytest.raises(ModelCorrupt) as ei:
        open_model(z, _ref(FULL))
    msg = str(ei.value)
    assert f"model {FULL!r}" in msg and str(d / "built.json") in msg and repr(LITE) in msg and FIX in msg
    with pytest.raises(ModelCorrupt, match=LITE):
        z.golden(FULL)  # nor its golden set, which auto would check the wrong model against


def test_signed_built_json_of_another_version_is_refused(zoo, tmp_path):
    """An older signed version copied into the folder of another version (the `current` link points there) ran as
    that version: a downgrade that every check passed."""
    cache = tmp_path / "cache"
    d = _copy_into(zoo, FACE, cache, version="9.9.9")
    (d.parent / "current").symlink_to("9.9.9")
    z = ModelZoo(cache)
    assert z.model_dir(FACE) == d
    with pytest.raises(ModelCorrupt, match=r"version '0\.10\.21-r1'.*'9\.9\.9'"):
        open_model(z, _ref(FACE))
    # the same files under their own version open
    (d.parent / "current").unlink()
    _copy_into(zoo, FACE, cache)
    assert open_model(ModelZoo(cache), _ref(FACE)).info.backend == "onnxruntime"


# ------------------------------------------------------------------ the public key

def test_configured_public_key_that_is_missing_fails_closed(zoo, tmp_path, monkeypatch):
    """A device configured with its own key ($STOREFRONT_EDGE_MODEL_PUBKEY or public_key=) whose file is missing
    (typo, unmounted volume) loaded every model with a warning and no signature check at all."""
    cache = tmp_path / "cache"
    _copy_into(zoo, FACE, cache)
    missing = tmp_path / "etc" / "fleet.pub"
    with pytest.raises(ModelCorrupt) as ei:
        open_model(ModelZoo(cache, public_key=missing), _ref(FACE))
    assert str(missing) in str(ei.value) and "not found" in str(ei.value)
    monkeypatch.setenv(sign.ENV_PUBLIC_KEY, str(missing))
    with pytest.raises(ModelCorrupt, match=sign.ENV_PUBLIC_KEY):
        open_model(ModelZoo(cache), _ref(FACE))
    monkeypatch.delenv(sign.ENV_PUBLIC_KEY)
    # the cache's own dev key missing stays a warning (dev set-ups, docs/MODELS.md), hashes still checked
    (cache / "keys" / sign.DEV_PUB).unlink()
    assert open_model(ModelZoo(cache), _ref(FACE)).info.backend == "onnxruntime"


# ------------------------------------------------------------------ feeds and options

@pytest.mark.parametrize("backend", BACKENDS)
def test_integer_feed_is_refused_not_cast(zoo, backend):
    """A uint8 camera frame fed as is was cast to float32 0..255 for a model that wants 0..1: detector scores of
    nonsense, no error. Integer and bool feeds are refused; float16/float64 are the same numbers and still run."""
    s = open_model(zoo, _ref(FACE, backend))
    name = s.inputs[0].name
    x = np.random.default_rng(0).random(s.inputs[0].shape, np.float32)
    for bad in ((x * 255).astype(np.uint8), (x * 255).astype(np.int32), x > 0.5):
        with pytest.raises(BackendError, match=rf"input {name!r} is {bad.dtype.name}.*float32"):
            s.run({name: bad})
    ref = s.run({name: x})
    for ok in (x.astype(np.float64), x.astype(np.float16)):
        got = s.run({name: ok})
        for k in ref:
            assert np.allclose(got[k], ref[k], atol=0.05 * max(1.0, float(np.abs(ref[k]).max()))), k


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threads", [0, -1])
def test_threads_below_one_is_an_option_error(zoo, backend, threads):
    """threads=0 / -1 through Backend.load (load_session: the update self-test, benches): onnxruntime took it as
    "all cores" (on a 2-core device shared with capture and render), OpenVINO and TFLite failed with an error that
    blamed the model file."""
    path = zoo.artifact(FACE, backend, "fp32").path
    with pytest.raises(BackendError, match=rf"^{backend}: threads must be >= 1, got {threads}") as ei:
        load_session(backend, path, threads=threads)
    assert "cannot load" not in str(ei.value)


# ------------------------------------------------------------------ golden sets

def test_golden_without_samples_is_a_golden_error(zoo, tmp_path):
    """A golden set with no samples (or inputs and outputs of different sample counts) crashed `auto` with an
    IndexError out of parity.run_batched, or compared nothing; now it is refused as not a usable golden set."""
    ins, outs = load_golden(zoo.model_dir(FACE) / "golden.npz")
    p = tmp_path / "golden.npz"
    np.savez(p, **{f"input:{k}": v[:0] for k, v in ins.items()}, **{f"output:{k}": v[:0] for k, v in outs.items()})
    with pytest.raises(GoldenError, match="no samples"):
        load_golden(p)
    np.savez(p, **{f"input:{k}": v for k, v in ins.items()}, **{f"output:{k}": v[:3] for k, v in outs.items()})
    with pytest.raises(GoldenError, match="sample"):
        load_golden(p)
    np.savez(p, **{f"input:{k}": v for k, v in ins.items()}, **{f"output:{k}": v for k, v in outs.items()})
    assert load_golden(p)[0].keys() == ins.keys()


def test_auto_with_an_empty_signed_golden_set_names_the_model(zoo, tmp_path):
    """The same through the zoo, with the empty golden set signed: auto raised IndexError from parity."""
    cache = tmp_path / "cache"
    d = _copy_into(zoo, FACE, cache)
    ins, outs = load_golden(d / "golden.npz")
    g = d / "golden.npz"
    with open(g, "wb") as f:
        np.savez(f, **{f"input:{k}": v[:0] for k, v in ins.items()}, **{f"output:{k}": v[:0] for k, v in outs.items()})
    payload = json.loads((d / "built.json").read_text())["payload"]
    payload["files"]["golden.npz"] = {"sha256": sign.hashlib.sha256(g.read_bytes()).hexdigest(),
                                      "size_bytes": g.stat().st_size}
    sign.write_signed(d / "built.json", payload, sign.signing_key(cache))
    with pytest.raises(GoldenError, match=rf"model {FACE!r}: {g}: .*no samples.*{FIX}"):
        open_model(ModelZoo(cache), ModelRef(name=FACE, backend="auto", precision="fp32", threads=1),
                   cache_path=tmp_path / "choice.json", rounds=1, per_round=1)


def test_an_unreadable_model_file_is_a_clear_error(tmp_path, monkeypatch):
    """A model file that exists but cannot be read (EIO from failing storage; EACCES cannot be shown as root) gave
    a raw OSError traceback from the format sniffing and from the signature check."""
    import errno

    from edge.backends.base import ModelLoadError
    from edge.backends.formats import validate
    from models import sign

    f = tmp_path / "m.onnx"
    f.write_bytes(b"\x08\x07" + b"\x00" * 100)
    real_open = open

    def failing_open(p, *a, **kw):
        if str(p) == str(f):
            raise OSError(errno.EIO, "Input/output error", str(p))
        return real_open(p, *a, **kw)

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(ModelLoadError, match=r"cannot read .*m\.onnx: Input/output error"):
        validate(f, "onnxruntime", ("onnx",))
    with pytest.raises(sign.SignatureError, match=r"m\.onnx: cannot be read \(Input/output error\)"):
        sign.verify_files(tmp_path, {"files": {"m.onnx": {"size_bytes": 102, "sha256": "0" * 64}}})
