"""Config errors inside `[[table]]` items name the key and the likely fix, like top-level ones (real loader)."""
from __future__ import annotations

import subprocess
import sys

import pytest

HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "shelf-camera"\n'


@pytest.mark.parametrize("body, line", [
    ('[models.person_detector]\nname = "nanodet_m_416"\n[[cameras]]\nid = "c1"\n[cameras.source]\ntype = "demo"\n'
     'fsp = 5\n', "cameras.0.source.fsp: Extra inputs are not permitted (fix: remove it or rename it to 'fps')"),
    ('[[analytics.zones]]\nname = "a"\npolygon = [[0, 0], [100, 0], [100, 100]]\nenter_frame = 3\n',
     "analytics.zones.0.enter_frame: Extra inputs are not permitted (fix: remove it or rename it to 'enter_frames')"),
])
def test_typo_in_a_list_item_suggests_the_key(tmp_path, body, line):
    from edge.app.config import ConfigError, load_config

    p = tmp_path / "dev.toml"
    p.write_text(HEAD + body)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}: {line}" in str(e.value).splitlines()
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "config", "check", str(p)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and f"{p}: {line}" in r.stderr


@pytest.mark.parametrize("body, line", [
    ('source = "demo"\n',  # written below the [device] header: TOML puts it in [device]
     "device.source: Extra inputs are not permitted (fix: 'source' is a section of its own: write it as [source] "
     "(keys below a [table] header belong to that table))"),
    ('[source]\nwidth = "wide"\n', "source.width: Input should be a valid integer, unable to parse string as an "
     "integer (fix: use a whole number, unquoted (e.g. 30))"),
    ('[people]\ntiles = [2]\n', "people.tiles.1: Field required (fix: give the list all its values)"),
    ('[analytics]\nzones = { name = "a" }\n', "analytics.zones: Input should be a valid list (fix: use a list: "
     "[ ... ])"),
])
def test_wrong_type_or_place_says_what_to_write(tmp_path, body, line):
    from edge.app.config import ConfigError, load_config

    p = tmp_path / "dev.toml"
    p.write_text(HEAD + body)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}: {line}" in str(e.value).splitlines()
