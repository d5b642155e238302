"""Alert rules from TOML: the documented example parses; bad rules are errors that name the key."""
from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge.alerts import METRICS, AlertConfigError, AlertsConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "ALERTS.md"
OK = {"id": "q", "metric": "queue_length", "key": "checkout", "op": ">=", "threshold": 4}


def _toml_example() -> str:
    return DOC.read_text().split("<!-- rules-example -->")[1].split("```toml")[1].split("```")[0]


def test_documented_example_parses():
    cfg = AlertsConfig.model_validate(tomllib.loads(_toml_example())["alerts"])
    by_id = {r.id: r for r in cfg.rules}
    assert set(by_id) >= {"checkout-queue", "kiosk-dwell", "night-loitering", "kiosk-help", "facing-a3-empty"}
    assert by_id["checkout-queue"].condition() == "queue_length(checkout) >= 4 for 60s"
    assert by_id["kiosk-dwell"].condition() == "dwell(kiosk) >= 90s"
    assert by_id["facing-a3-empty"].condition() == "facing_empty(A3) for 300s"
    assert by_id["night-loitering"].hours == "22:00-06:00"
    assert by_id["kiosk-help"].escalation_severity == "critical"
    cfg.validate_against({"queue": ["checkout"], "zone": ["kiosk"], "loitering": ["entrance"], "kiosk": ["kiosk"],
                          "shelf": ["A3"]})


def _error(rule: dict | None = None, **section) -> tuple[str, str]:
    """(location, message) of the first validation error."""
    data = {"rules": [rule]} if rule is not None else {}
    with pytest.raises(ValidationError) as e:
        AlertsConfig.model_validate({**data, **section})
    err = e.value.errors()[0]
    return ".".join(str(p) for p in err["loc"]), err["msg"]


@pytest.mark.parametrize("rule, loc, words", [
    ({**OK, "metric": "queue_lenght"}, "rules.0.metric", "unknown metric 'queue_lenght'"),
    ({**OK, "op": "<", "threshold": 0}, "rules.0.threshold", "can never be true"),
    ({**OK, "op": ">", "threshold": -1}, "rules.0.threshold", "always true"),
    ({**OK, "op": "=="}, "rules.0.op", ""),
    ({**OK, "op": None}, "rules.0.op", "set op"),
    ({k: v for k, v in OK.items() if k != "threshold"}, "rules.0.threshold", "set threshold"),
    ({**OK, "clear_threshold": 6}, "rules.0.clear_threshold", "at most threshold 4"),
    ({**OK, "clear_threshold": 0}, "rules.0.clear_threshold", "could never clear"),
    ({**OK, "for_s": -5}, "rules.0.for_s", "greater than or equal to 0"),
    ({**OK, "cooldown_s": -1}, "rules.0.cooldown_s", ""),
    ({"id": "l", "metric": "loitering", "key": "door", "threshold": 1}, "rules.0.threshold", "flag"),
    ({"id": "l", "metric": "loitering", "key": "door", "op": ">="}, "rules.0.op", "flag"),
    ({**OK, "hours": "22:00-6:00"}, "rules.0.hours", "HH:MM-HH:MM"),
    ({**OK, "hours": "25:00-06:00"}, "rules.0.hours", "HH:MM-HH:MM"),
    ({**OK, "quiet_hours": "12:00-12:00"}, "rules.0.quiet_hours", "empty window"),
    ({**OK, "severity": "urgent"}, "rules.0.severity", ""),
    ({**OK, "severity": "critical", "escalate_after_s": 600}, "rules.0.escalate_to", "above severity"),
    ({**OK, "escalate_to": "info", "escalate_after_s": 600}, "rules.0.escalate_to", "above severity"),
    ({**OK, "escalate_to": "critical"}, "rules.0.escalate_to", "escalate_after_s"),
    ({**OK, "escalate_after_s": 0}, "rules.0.escalate_after_s", ""),
    ({**OK, "id": "bad id"}, "rules.0.id", ""),
    ({**OK, "dedup_key": "a b"}, "rules.0.dedup_key", "dedup_key"),
    ({**OK, "treshold": 4}, "rules.0.treshold", "Extra inputs"),
])
def test_bad_rules_name_the_key(rule, loc, words):
    got_loc, msg = _error(rule)
    assert got_loc == loc, msg
    assert words in msg


def test_duplicate_ids_and_bad_timezone():
    loc, msg = _error(None, rules=[OK, {**OK, "key": "kiosk"}])
    assert loc == "rules" and "rules.1.id: duplicate rule id 'q'" in msg
    loc, msg = _error(None, timezone="Mars/Olympus")
    assert loc == "timezone" and "unknown time zone" in msg


def test_validate_against_names_missing_keys():
    cfg = AlertsConfig.model_validate({"rules": [
        OK, {**OK, "id": "typo", "key": "chekout"},
        {"id": "e", "metric": "facing_empty", "key": "B9"},
        {"id": "d", "metric": "dwell", "key": "kiosk", "op": ">=", "threshold": 90},
        {"id": "off", "metric": "loitering", "key": "nowhere", "enabled": False},  # disabled: not checked
    ]})
    with pytest.raises(AlertConfigError) as e:
        cfg.validate_against({"queue": ["checkout", "returns"], "shelf": ["A1", "A3"]})
    assert e.value.problems == [
        "alerts.rules.1.key: queue 'chekout' of rule 'typo' is not defined on this device "
        "(fix: use one of: checkout, returns)",
        "alerts.rules.2.key: shelf 'B9' of rule 'e' is not defined on this device (fix: use one of: A1, A3)",
        "alerts.rules.3.key: zone 'kiosk' of rule 'd' is not defined on this device (fix: define a zone 'kiosk' first)",
    ]
    cfg.validate_against({"queue": ["checkout", "chekout"], "shelf": ["B9"], "zone": ["kiosk"]})


def test_every_metric_is_documented():
    doc = DOC.read_text()
    for name, spec in METRICS.items():
        assert f"`{name}`" in doc, name
