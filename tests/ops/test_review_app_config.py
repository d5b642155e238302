"""Config errors inside `[[table]]` items name the key and the likely fix, like top-level ones (real loader)."""
from __future__ import annotations

import subprocess
import sys

import pytest

HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "shelf-camera"\n'


def refused_with(tmp_path, body: str, line: str):
    """Write HEAD + body as a device TOML; the loader refuses it with `line` (prefixed by the file) among its lines."""
    from edge.app.config import ConfigError, load_config

    p = tmp_path / "dev.toml"
    p.write_text(HEAD + body)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert f"{p}: {line}" in str(e.value).splitlines()
    return p


@pytest.mark.parametrize("body, line", [
    ('[models.person_detector]\nname = "nanodet_m_416"\n[[cameras]]\nid = "c1"\n[cameras.source]\ntype = "demo"\n'
     'fsp = 5\n', "cameras.0.source.fsp: Extra inputs are not permitted (fix: remove it or rename it to 'fps')"),
    ('[[analytics.zones]]\nname = "a"\npolygon = [[0, 0], [100, 0], [100, 100]]\nenter_frame = 3\n',
     "analytics.zones.0.enter_frame: Extra inputs are not permitted (fix: remove it or rename it to 'enter_frames')"),
])
def test_typo_in_a_list_item_suggests_the_key(tmp_path, body, line):
    p = refused_with(tmp_path, body, line)
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "config", "check", str(p)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and f"{p}: {line}" in r.stderr


@pytest.mark.parametrize("body, line", [
    ('source = "demo"\n',  # written below the [device] header: TOML puts it in [device]
     "device.source: Extra inputs are not permitted (fix: 'source' is a section of its own: write it as [source] "
     "(keys below a [table] header belong to that table))"),
    ('[source]\nwidth = "wide"\n', "source.width: Input should be a valid integer (fix: use a whole number, "
     "unquoted (e.g. 30))"),
    ('[people]\ntiles = [2]\n', "people.tiles.1: Field required (fix: give the list all its values)"),
    ('[analytics]\nzones = { name = "a" }\n', "analytics.zones: Input should be a valid list (fix: use a list: "
     "[ ... ])"),
])
def test_wrong_type_or_place_says_what_to_write(tmp_path, body, line):
    refused_with(tmp_path, body, line)


ZONE_RULE = ('[[analytics.zones]]\nname = "door"\npolygon = [[0, 0], [100, 0], [100, 100], [0, 100]]\n'
             '[[alerts.rules]]\nid = "crowd"\nmetric = "occupancy"\nkey = "door"\nop = ">="\nthreshold = 3\n')


def test_frames_further_apart_than_the_alert_gap_are_refused(tmp_path):
    """The engine treats a step over [alerts] max_gap_s as a gap (for_s starts over): a source slower than that
    could never open an alert, so the config says so, for the main source and each camera."""
    from edge.app.config import ConfigError, load_config

    p = tmp_path / "slow.toml"
    p.write_text(HEAD + '[source]\ntype = "demo"\nfps = 0.02\n' + ZONE_RULE)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert (f"{p}: alerts.max_gap_s: 30 s, but frames come every 50 s (source.fps 0.02): every frame would count "
            "as a gap in the data and no alert could open (fix: set alerts.max_gap_s above 50, or raise "
            "source.fps)") in str(e.value).splitlines()
    p.write_text(HEAD + '[source]\ntype = "demo"\nfps = 0.02\n[alerts]\nmax_gap_s = 120\n' + ZONE_RULE)
    assert load_config(p).alerts.max_gap_s == 120
    cam = ('[models.person_detector]\nname = "nanodet_m_416"\n[[cameras]]\nid = "c1"\nfps = 0.025\n'
           '[cameras.source]\ntype = "demo"\n' + ZONE_RULE.replace("[[analytics.", "[[cameras.analytics.")
           .replace("[[alerts.", "[[cameras.alerts."))
    p.write_text(HEAD + cam)
    with pytest.raises(ConfigError, match=r"cameras\.0\.alerts\.max_gap_s: 30 s, but frames come every 40 s "
                                          r"\(cameras\.0\.fps 0\.025\)"):
        load_config(p)
