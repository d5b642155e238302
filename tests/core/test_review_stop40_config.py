"""Second look at the device config loader: every error names the file, the key as written in the TOML and a fix
that is valid TOML, old `[[pose.zones]]` are checked where the file has them, and values the runtime cannot use
are refused at load time."""
from __future__ import annotations

import tomllib

import pytest

from edge.app.config import ConfigError, load_config, parse_config

HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\n'
TRIANGLE = "[[0, 0], [100, 0], [100, 100]]"


def problems(body: str, top: str = "") -> list[str]:
    """The problems of HEAD + body (`top`: root keys, written above [device])."""
    with pytest.raises(ConfigError) as e:
        parse_config(tomllib.loads(top + HEAD + body), "dev.toml")
    return e.value.problems


def test_a_value_of_the_wrong_type_for_a_union_key_is_one_problem_at_the_key_in_the_file():
    """A swatch `colour` (a name or an index: `str | int`) given a list came out as two problems at keys that do not
    exist, `tryon.gestures.swatches.0.colour.str` and `....colour.int` (pydantic's union member tags)."""
    body = '[[tryon.gestures.swatches]]\ncolour = [1]\nrect = [0.8, 0.1, 0.9, 0.2]\n'
    [p] = problems(body)
    key, msg = p.split(": ", 1)
    assert key == "tryon.gestures.swatches.0.colour", p
    assert "string" in msg and "integer" in msg and "(fix:" in msg, p


def test_a_list_item_that_is_no_table_gets_an_array_of_tables_header_as_its_fix():
    """`zones = [1]` was told `use a table: [analytics.zones.0]`, a header TOML reads as a table named "0", not as an
    item of the list."""
    [p] = problems("[analytics]\nzones = [1]\n")
    assert p.startswith("analytics.zones.0: ")
    assert "[[analytics.zones]]" in p and "[analytics.zones.0]" not in p, p


@pytest.mark.parametrize("body, key", [
    ('[source]\ntype = "video"\n', "source.uri"),
    ('[models.person_detector]\nname = "nanodet_m_416"\n[[cameras]]\nid = "aisle"\n[cameras.source]\n'
     'type = "rtsp"\n', "cameras.0.source.uri"),
])
def test_an_empty_source_uri_is_named_in_full(body, key):
    """The check that a camera / video / rtsp / images source has a uri named the table (`source`), not the key to
    set (`source.uri`)."""
    [p] = problems(body)
    assert p.split(": ", 1)[0] == key, p
    assert "(fix: set uri to" in p


def test_errors_in_old_pose_zones_name_the_pose_zones_key_of_the_file():
    """An old `[[pose.zones]]` entry is moved to `[[analytics.zones]]` before validation; its errors named
    `analytics.zones.N`, a key the file does not have (and with other zones there, N is not even its index)."""
    door = f'[[analytics.zones]]\nname = "door"\npolygon = {TRIANGLE}\n'
    [p] = problems(door + '[[pose.zones]]\nname = "a"\npolygon = [[0, 0], [1, 0]]\ninertia = 3\n')
    assert p.startswith("pose.zones.0.polygon: "), p
    assert "[[pose.zones]]" in p and "analytics.zones.1" in p, p  # says where the entry went
    [p] = problems(door + f'[[pose.zones]]\nname = "door"\npolygon = {TRIANGLE}\n')
    assert p.startswith("pose.zones.0.name: 'door' is already used by analytics.zones.0;"), p  # the file's own zone
    [p] = problems(f'[[pose.zones]]\nname = "a"\npolygon = {TRIANGLE}\n' * 2)
    assert p.startswith("pose.zones.1.name: 'a' is already used by pose.zones.0;"), p
    # frame checks after validation too
    [p] = problems('[[pose.zones]]\nname = "far"\npolygon = [[1000, 1000], [2000, 1000], [2000, 2000]]\n')
    assert p.startswith("pose.zones.0.polygon: zone 'far'"), p


@pytest.mark.parametrize("body", ["[pose]\nzones = [1]\n", '[pose]\nzones = "door"\n', "[pose]\nzones = 3\n"])
def test_old_pose_zones_that_are_not_tables_are_errors(body):
    """`zones = [1]` or `zones = "door"` under [pose] were dropped without a word: the file passed `edge config
    check` with zones its author meant to have."""
    ps = problems(body)
    assert ps and all(p.startswith("pose.zones") for p in ps), ps


@pytest.mark.parametrize("top, analytics", [("analytics = 3\n", ""), ("", "[analytics]\nzones = 3\n")])
def test_old_pose_zones_beside_a_broken_analytics_section_are_a_config_error_not_a_crash(top, analytics, tmp_path):
    """Moving `[[pose.zones]]` into an `analytics` that is no table (or whose `zones` is no list) raised TypeError
    out of load_config: a traceback from `edge config check` instead of the file, key and fix. So did an old
    zone's `anchor` that is no string (a list is no key of the anchor map)."""
    f = tmp_path / "old.toml"
    f.write_text(top + HEAD + analytics + f'[[pose.zones]]\nname = "a"\npolygon = {TRIANGLE}\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert e.value.problems and all(p.startswith("analytics") for p in e.value.problems), e.value.problems
    [p] = problems(f'[[pose.zones]]\nname = "a"\npolygon = {TRIANGLE}\nanchor = [1]\n')
    assert p.startswith("pose.zones.0.anchor: "), p


@pytest.mark.parametrize("value", ["inf", "1e300"])
def test_a_reconnect_delay_the_reader_cannot_wait_is_refused(value):
    """`[source] reconnect_s = inf` passed (only `> 0` was checked): the reader thread's `Event.wait(inf)` raises
    OverflowError the first time the camera is lost, so the camera never comes back."""
    [p] = problems(f"[source]\nreconnect_s = {value}\n")
    assert p.startswith("source.reconnect_s: ") and "(fix: use a value of at most" in p, p
    [p] = problems('[models.person_detector]\nname = "nanodet_m_416"\n[[cameras]]\nid = "a"\n[cameras.source]\n'
                   f'reconnect_s = {value}\n')
    assert p.startswith("cameras.0.source.reconnect_s: "), p


@pytest.mark.parametrize("body, key, fix", [
    ('[source]\ntype = "demo"\nfps = "30"\n', "source.fps", "use a number, unquoted"),
    ('[sync]\nport = true\n', "sync.port", "use a whole number"),
    ('[source]\ntype = "demo"\nloop = "no"\n', "source.loop", "use true or false, unquoted"),
    ('[source]\ntype = "demo"\nreconnect_s = false\n', "source.reconnect_s", "use a number, unquoted"),
])
def test_quoted_numbers_and_booleans_are_errors_not_converted(body, key, fix):
    """pydantic's lax mode turned `port = true` into port 1, `fps = "30"` into 30.0 and `loop = "no"` into false:
    a typo'd value ran as something the file never said. TOML has the types, so the wrong one is refused."""
    [p] = problems(body)
    assert p.startswith(f"{key}: ") and fix in p, p


def test_typed_values_still_load():
    """Ints for float keys and real booleans stay valid (the strictness refuses only strings and booleans)."""
    cfg = parse_config(tomllib.loads(HEAD + '[source]\ntype = "demo"\nfps = 25\nloop = false\n'), "dev.toml")
    assert cfg.source.fps == 25.0 and cfg.source.loop is False


def test_a_zone_with_an_absurd_coordinate_is_refused_at_its_key():
    """`[[0,0],[1e300,0],[1e300,100]]` (an exponent typo) was reported as "lies outside the 640x480 frame" although
    it covers the frame's top, after a NumPy overflow warning from casting 1e300 to int32 in the overlap check."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        [p] = problems('[[analytics.zones]]\nname = "door"\npolygon = [[0, 0], [1e300, 0], [1e300, 100]]\n')
    assert p.startswith("analytics.zones.0.polygon: ") and "frame pixels" in p, p


def test_quoted_numbers_inside_lists_are_errors_too():
    """The check covered a key's own value only: `polygon = [["10", "20"], ...]` was still converted silently."""
    [p] = problems('[[analytics.zones]]\nname = "door"\npolygon = [["10", "20"], [100, 0], [100, 100]]\n')
    assert p.startswith("analytics.zones.0.polygon: ") and "valid number in every item" in p, p
    cfg = parse_config(tomllib.loads(HEAD + '[[analytics.zones]]\nname = "door"\npolygon = ' + TRIANGLE + "\n"),
                       "dev.toml")
    assert cfg.analytics.zones[0].polygon[1] == (100.0, 0.0) or list(cfg.analytics.zones[0].polygon[1]) == [100, 0]


def test_two_alert_sections_may_not_share_a_state_file(tmp_path):
    """`[alerts] state_path` and a camera's `[cameras.alerts] state_path` naming one file: the two engines overwrote
    each other's state, and at a restart the one that loaded it resolved the other's alerts as `rule_removed`."""
    shared = tmp_path / "alerts.json"
    cams = (f'[[cameras]]\nid = "c1"\n[cameras.source]\ntype = "demo"\n[cameras.alerts]\nstate_path = "{shared}"\n'
            '[models.person_detector]\nname = "nanodet_m_416"\n')
    zone = '[[analytics.zones]]\nname = "door"\npolygon = ' + TRIANGLE + "\n"  # the main camera's analytics
    ps = problems(f'[alerts]\nstate_path = "{shared}"\n' + zone + cams)
    assert any(p.startswith("cameras.0.alerts.state_path: ") and "[alerts]" in p for p in ps), ps
    ok = tomllib.loads(HEAD + f'[alerts]\nstate_path = "{tmp_path / "main.json"}"\n' + zone + cams)
    parse_config(ok, "dev.toml")  # each its own file: fine
    # without main analytics the runtime opens no main engine: a leftover [alerts] state_path clashes with nothing
    parse_config(tomllib.loads(HEAD + f'[alerts]\nstate_path = "{shared}"\n' + cams), "dev.toml")
