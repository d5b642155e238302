"""The one seam through which the shopper changes the mirror: page buttons (source "touch") and gestures (e.g.
"swipe", "point", "palm") call `MirrorActions.apply(action, value, source)`.

It changes the pipeline's garment/colour selection (`TryOnPipeline.select`), keeps the last action (name,
source, seq, time) for the page's on-screen feedback, and for `save_look` builds the *look*: only garment ids,
colours and the suggested size, as one compact text (`look_text`) and its QR code SVG. Nothing about the person
(no image, no measurement) is ever part of a look. The pipeline's composite thread calls `observe()` once per
frame: where the dressed person stands (the page keeps them centred) and whether the visit ended (the saved
look is forgotten when the shopper leaves).
"""
from __future__ import annotations

import io
import logging
import re
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote

import numpy as np
import segno

from edge.tryon.garments import CatalogError

log = logging.getLogger(__name__)

LABELS = {"next_garment": "Next garment", "prev_garment": "Previous garment", "garment": "Garment",
          "colour": "Colour", "save_look": "Look saved"}
ACTIONS = tuple(LABELS)
SOURCE_RE = re.compile(r"^[a-z][a-z0-9_]{0,23}$")
LOOK_PREFIX = "storefront-look"  # the look text: storefront-look?v=1&items=TEE-001:navy,JKT-002:olive&size=M
LOOK_VERSION = "1"
LOOK_TTL_S = 300.0  # a saved look is forgotten this long after it was saved (or when the shopper leaves)
TORSO = (11, 12, 23, 24)  # shoulders and hips: the horizontal centre of the dressed person


class ActionError(ValueError):
    """An action the mirror cannot apply (unknown name, source or value); nothing was changed."""


@dataclass(frozen=True, slots=True)
class Look:
    """A saved look: garments with their colours and the suggested size (nothing about the person)."""

    seq: int
    items: tuple[tuple[str, str], ...]  # (sku, colour)
    size: str | None
    text: str
    svg: bytes
    t: float  # monotonic time it was saved

    def to_public(self) -> dict:
        return {"seq": self.seq, "items": [{"sku": s, "colour": c} for s, c in self.items], "size": self.size,
                "text": self.text, "qr_svg": f"api/look.svg?seq={self.seq}"}


def look_text(items, size: str | None, prefix: str = LOOK_PREFIX) -> str:
    """The compact look text the QR code carries: `prefix?v=1&items=SKU:colour,...&size=M` (each value
    percent-encoded; size left out while unknown). `prefix` may be a shop URL for the phone to open."""
    if not items:
        raise ActionError("a look needs at least one garment")
    enc = ",".join(f"{quote(s, safe='-_.')}:{quote(c, safe='-_.')}" for s, c in items)
    text = f"{prefix}?v={LOOK_VERSION}&items={enc}"
    return text + (f"&size={quote(size, safe='-_.')}" if size else "")


def parse_look(text: str) -> dict:
    """The fields of a look text: {"v", "items": [{"sku", "colour"}], "size"}; ValueError if it is not one."""
    _, sep, query = text.partition("?")
    if not sep:
        raise ValueError(f"not a look (no '?'): {text[:60]!r}")
    fields = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    if fields.get("v") != LOOK_VERSION or "items" not in fields:
        raise ValueError(f"not a version {LOOK_VERSION} look: {text[:60]!r}")
    items = []
    for it in fields["items"].split(","):
        sku, _, colour = it.partition(":")
        items.append({"sku": unquote(sku), "colour": unquote(colour)})
    return {"v": LOOK_VERSION, "items": items, "size": unquote(fields["size"]) if "size" in fields else None,
            **{k: unquote(v) for k, v in fields.items() if k not in ("v", "items", "size")}}


def look_qr(text: str):
    """The segno QR code of a look text (error correction M: survives a glossy screen's glare)."""
    return segno.make(text, error="m", boost_error=False)


def qr_svg(text: str) -> bytes:
    """QR code of `text` as a scalable SVG (black on white, 4-module quiet zone, viewBox only: CSS sizes it)."""
    buf = io.BytesIO()
    look_qr(text).save(buf, kind="svg", scale=1, border=4, dark="#000", light="#fff", xmldecl=False,
                       omitsize=True, nl=False)
    return buf.getvalue()


class MirrorActions:
    """Apply shopper actions to a TryOnPipeline (any object with `catalog`, `selection`, `select(sku, colour)`,
    `size_suggestion` and `sessions.current`); thread-safe: page requests and gesture threads call it at once."""

    def __init__(self, pipeline, look_prefix: str = LOOK_PREFIX, clock=time.monotonic):
        self.p = pipeline
        self.look_prefix = look_prefix
        self._clock = clock
        self._lock = threading.Lock()
        self._seq = 0
        self._last: dict | None = None
        self._look: Look | None = None
        self._look_seq = 0  # never reused, so the page tells a new visit's first look from the last one
        self._saved: dict[str, str] = {}  # sku -> colour saved during this visit (insertion order)
        self.person_x: float | None = None  # dressed person's centre, 0..1 across the displayed frame

    # -- actions (any thread) -----------------------------------------------------------------------------------
    def apply(self, action: str, value=None, source: str = "touch") -> dict:
        """Apply one action; returns {"action": the record, "sku", "colour", "look"}. ActionError or CatalogError
        (both ValueError) for a bad action, value or source, and then nothing changed."""
        if action not in LABELS:
            raise ActionError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
        if not isinstance(source, str) or not SOURCE_RE.match(source):
            raise ActionError(f"bad source {source!r}: lower-case letters, digits, '_' (up to 24), e.g. 'touch'")
        with self._lock:
            sku, colour = self.p.selection
            detail = None
            if action in ("next_garment", "prev_garment"):
                skus = self.p.catalog.skus()
                i = skus.index(sku) if sku in skus else -1
                new = skus[(i + (1 if action == "next_garment" else -1)) % len(skus)]
                self._select(new, colour)
                detail = self.p.catalog.entry(new).name
            elif action == "garment":
                if not isinstance(value, str) or not value:
                    raise ActionError("garment needs a value: the garment id (SKU), e.g. 'TEE-001'")
                self._select(value, colour)
                detail = self.p.catalog.entry(value).name
            elif action == "colour":
                name = self._colour_name(sku, value)
                self.p.select(sku, name)
                detail = name
            sku, colour = self.p.selection
            look = None
            if action == "save_look":
                look = self._save(sku, colour)
                detail = ", ".join(f"{self.p.catalog.entry(s).name} ({c})" for s, c in look.items)
            self._seq += 1
            self._last = {"seq": self._seq, "action": action, "source": source,
                          "value": None if value is None else str(value)[:64],
                          "label": LABELS[action] + (f": {detail}" if detail else ""),
                          "sku": sku, "colour": colour, "t": self._clock()}
            log.info("mirror action %s (%s) -> %s/%s", action, source, sku, colour)
            return {"action": self._public_last(), "sku": sku, "colour": colour,
                    "look": look.to_public() if look else None}

    def _select(self, sku: str, colour: str) -> None:
        """Choose `sku`, keeping the current colour when the garment has it (else its first colour)."""
        entry = self.p.catalog.entry(sku)  # CatalogError for unknown SKUs
        names = [c.name for c in entry.colours]
        self.p.select(sku, colour if colour in names else "")

    def _colour_name(self, sku: str, value) -> str:
        names = [c.name for c in self.p.catalog.entry(sku).colours]
        if isinstance(value, bool) or value is None or value == "":
            raise ActionError(f"colour needs a value: a colour name or index (0-{len(names) - 1}) of {sku}: {names}")
        if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
            i = int(value)
            if not 0 <= i < len(names):
                raise ActionError(f"{sku} has {len(names)} colours (0-{len(names) - 1}): {names}; got index {i}")
            return names[i]
        if isinstance(value, str) and value in names:
            return value
        raise CatalogError(f"{sku} has no colour {value!r}; colours: {names}")

    def _save(self, sku: str, colour: str) -> Look:
        self._saved.pop(sku, None)
        self._saved[sku] = colour
        items = tuple(reversed(self._saved.items()))  # the garment on now first, then earlier saves
        size = self.p.size_suggestion
        text = look_text(items, size, self.look_prefix)
        self._look_seq += 1
        self._look = Look(seq=self._look_seq, items=items, size=size, text=text, svg=qr_svg(text), t=self._clock())
        return self._look

    # -- the pipeline's composite thread --------------------------------------------------------------------------
    def observe(self, person, width: int, mirrored: bool) -> None:
        """Per composited frame: the dressed person's horizontal centre in the displayed frame (None if nobody);
        when nobody is present any more (session tracker), the visit's saved look is forgotten."""
        if person is None:
            self.person_x = None
        else:
            lm = person.landmarks[list(TORSO)]
            seen = lm[lm[:, 3] > 0.3, 0]
            x = float(np.median(seen if len(seen) else lm[:, 0])) / max(width, 1)
            x = min(1.0, max(0.0, x))
            self.person_x = 1.0 - x if mirrored else x
        if self._saved and not self.present:
            with self._lock:
                self._saved.clear()
                self._look = None

    # -- what the page reads ----------------------------------------------------------------------------------------
    @property
    def present(self) -> bool:
        """Someone is in front of the mirror: the session tracker's open session (it ends after
        `[tryon.session] absence_timeout_s` without a person)."""
        return self.p.sessions.current is not None

    def look(self) -> Look | None:
        with self._lock:
            if self._look is not None and self._clock() - self._look.t > LOOK_TTL_S:
                self._look, self._saved = None, {}
            return self._look

    def _public_last(self) -> dict | None:
        if self._last is None:
            return None
        d = {k: v for k, v in self._last.items() if k != "t"}
        d["age_s"] = round(self._clock() - self._last["t"], 2)
        return d

    def state(self) -> dict:
        """{"present", "person_x", "last_action", "look"} for /mirror/api/state."""
        look = self.look()
        px = self.person_x
        with self._lock:
            last = self._public_last()
        return {"present": self.present, "person_x": None if px is None else round(px, 3), "last_action": last,
                "look": look.to_public() if look else None}
