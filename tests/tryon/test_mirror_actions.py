"""MirrorActions, the one seam touch and gestures change the mirror through, on a real TryOnPipeline (not started:
selection, catalogue and session tracker are the real ones): next/previous garment, colour by name or index,
garment by id, bad input refused with nothing changed, the last-action record, and the saved look: only garment
ids, colours and the suggested size, whose QR code decodes back to it."""
from __future__ import annotations

import io
import re

import cv2
import numpy as np
import pytest

from edge.tryon.actions import LOOK_TTL_S, ActionError, MirrorActions, look_qr, look_text, parse_look, qr_svg
from edge.tryon.config import TryOnConfig
from edge.tryon.garments import CatalogError
from edge.tryon.pipeline import TryOnPipeline


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


@pytest.fixture
def pipe(catalog):
    p = TryOnPipeline(TryOnConfig(), [], None, catalog=catalog)
    p.actions = MirrorActions(p, clock=Clock())  # the same seam, on a clock the test moves
    return p


def _decode(text: str) -> str:
    buf = io.BytesIO()
    look_qr(text).save(buf, kind="png", scale=6, border=4)
    img = cv2.imdecode(np.frombuffer(buf.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    decoded, points, _ = cv2.QRCodeDetector().detectAndDecode(img)
    assert points is not None, "no QR code found"
    return decoded


def test_garment_and_colour_actions(pipe):
    a, skus = pipe.actions, pipe.catalog.skus()
    assert pipe.selection == ("TEE-001", "navy")
    r = a.apply("next_garment")
    assert pipe.selection == (skus[1], pipe.catalog.entry(skus[1]).colours[0].name)
    assert r["action"]["seq"] == 1 and r["action"]["source"] == "touch"
    assert r["action"]["label"] == f"Next garment: {pipe.catalog.entry(skus[1]).name}"
    a.apply("prev_garment", source="swipe")
    a.apply("prev_garment", source="swipe")  # wraps around to the last garment
    assert pipe.selection[0] == skus[-1]
    a.apply("garment", "TEE-001", source="point")
    a.apply("colour", "red")
    assert pipe.selection == ("TEE-001", "red")
    a.apply("colour", 2)  # an index, as a gesture over the third swatch gives it
    assert pipe.selection == ("TEE-001", "white")
    a.apply("colour", "3")
    assert pipe.selection == ("TEE-001", "green")
    a.apply("garment", "JKT-002")  # the jacket has no green: its first colour
    assert pipe.selection == ("JKT-002", "olive")
    last = a.state()["last_action"]
    assert (last["seq"], last["action"], last["source"], last["value"]) == (8, "garment", "touch", "JKT-002")


@pytest.mark.parametrize("action, value, source, error", [
    ("dance", None, "touch", ActionError), ("colour", "purple", "touch", CatalogError),
    ("colour", 7, "touch", ActionError), ("colour", None, "touch", ActionError),
    ("garment", "NOPE-1", "touch", CatalogError), ("garment", None, "touch", ActionError),
    ("next_garment", None, "Swipe Left!", ActionError)])
def test_bad_actions_change_nothing(pipe, action, value, source, error):
    pipe.actions.apply("colour", "red")
    with pytest.raises(error) as e:
        pipe.actions.apply(action, value, source=source)
    assert str(e.value)  # a message that says what is wrong
    assert pipe.selection == ("TEE-001", "red") and pipe.actions.state()["last_action"]["seq"] == 1


def test_saved_look_carries_only_garments_colours_and_size(pipe):
    a = pipe.actions
    pipe.sessions.update(0.0, True, *pipe.selection)  # a shopper is in front (the session tracker sees them)
    pipe.size_suggestion = "M"
    a.apply("colour", "red")
    first = a.apply("save_look", source="palm")["look"]
    a.apply("next_garment")
    a.apply("colour", "tan")
    look = a.apply("save_look")["look"]
    assert look["seq"] == first["seq"] + 1
    assert set(look) == {"seq", "items", "size", "text", "qr_svg"}
    assert look["items"] == [{"sku": "JKT-002", "colour": "tan"}, {"sku": "TEE-001", "colour": "red"}]
    assert look["text"] == "storefront-look?v=1&items=JKT-002:tan,TEE-001:red&size=M"
    assert parse_look(look["text"]) == {"v": "1", "items": look["items"], "size": "M"}  # nothing else in it
    assert _decode(look["text"]) == look["text"]
    svg = a.look().svg
    assert svg.startswith(b"<svg") and b"viewBox" in svg and b"<image" not in svg
    assert set(re.findall(rb"<(\w+)", svg)) <= {b"svg", b"path"}  # modules only: no picture, no text
    state = a.state()
    assert state["present"] and state["look"] == look
    assert "Look saved: Field jacket (tan), Crew-neck tee (red)" == state["last_action"]["label"]


def test_look_is_forgotten_when_the_shopper_leaves(pipe):
    a = pipe.actions
    pipe.sessions.update(0.0, True, *pipe.selection)
    a.apply("save_look")
    assert a.look() is not None and a.state()["present"]
    a.observe(None, 640, True)  # still within the absence timeout: the session (and the look) stay
    assert a.look() is not None
    pipe.sessions.update(10.0, False, *pipe.selection)  # gone for longer than absence_timeout_s
    a.observe(None, 640, True)
    assert a.look() is None and not a.state()["present"]
    assert a.apply("save_look")["look"]["items"] == [{"sku": "TEE-001", "colour": "navy"}]  # a fresh look
    a._clock.t += LOOK_TTL_S + 1  # and an old look expires on its own
    assert a.look() is None and a.state()["look"] is None


def test_look_text_encodes_odd_names_and_round_trips():
    items = (("SKU 1", "light grey"), ("A-2", "rose:gold,x"))
    text = look_text(items, "one size")
    assert parse_look(text) == {"v": "1", "items": [{"sku": s, "colour": c} for s, c in items], "size": "one size"}
    assert parse_look(look_text(items[:1], None))["size"] is None
    assert _decode(text) == text
    assert qr_svg(text) == qr_svg(text)
    with pytest.raises(ValueError):
        parse_look("hello")
    with pytest.raises(ActionError):
        look_text((), "M")
