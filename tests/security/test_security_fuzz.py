"""Property-based fuzzing (Hypothesis) of what a hostile or broken message reaches on the device and in the fleet
tools: command, offer, manifest, chunk and ack parsers, and the retained-message readers. For any input each
raises only its documented error (CommandError / PayloadError, UpdateError, SignatureError) or returns."""
from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from edge.core.events import Event
from models import sign
from sync import payloads, topics
from sync.commands import CommandError, CommandRouter, Incoming, builtin_handlers
from sync.delivery import Delivery
from sync.outbox import Outbox
from sync.payloads import PayloadError
from sync.update_download import Staging
from sync.update_job import Job, OfferArgs, RollbackArgs
from sync.update_manifest import UpdateError, build_payload, sign_payload, verify_raw
from sync.update_transport import _chunk_key, parse_offer

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=12), kids, max_size=5),
                    max_leaves=25)
RAW = st.binary(max_size=2048) | JSON.map(lambda v: json.dumps(v).encode())
KEY = Ed25519PrivateKey.generate()
PUB = KEY.public_key()
ANY_ERROR_BUT = "raised something other than its documented error"


# ---------------------------------------------------------------- commands and offers
def _router() -> tuple[CommandRouter, list[dict]]:
    out: list[dict] = []
    handlers = builtin_handlers(emit_ack=lambda args: None)
    handlers["model_update"] = lambda args: {"ok": parse_offer(args).name}
    handlers["model_rollback"] = lambda args: {"ok": parse_offer(args, RollbackArgs).name}
    return CommandRouter("d1", "s1", handlers, lambda cmd, raw: out.append(json.loads(raw))), out


COMMANDS = st.sampled_from(["ping", "set_log_level", "ack_alert", "reload_config", "snapshot", "model_update",
                            "model_rollback", "nope"])
ARGS = st.fixed_dictionaries({}, optional={"name": st.text(max_size=70) | JSON, "version": st.text(max_size=70) | JSON,
                                           "rollout": JSON, "reason": JSON, "level": JSON, "event_id": JSON,
                                           "extra": JSON})


@given(name=COMMANDS, raw=RAW | st.builds(lambda i, a: json.dumps({"id": i, "args": a}).encode(), JSON, ARGS),
       retained=st.booleans())
def test_command_parser_answers_every_input_with_a_result(name, raw, retained):
    router, out = _router()
    router.handle(Incoming(name, raw, retained))
    assert len(out) == 1
    res = out[0]
    assert res["status"] in ("ok", "error") and res["cmd"] == name
    assert not (res["reason"] or "").startswith("handler failed"), f"{ANY_ERROR_BUT}: {res['reason']}"
    if retained:
        assert res["status"] == "error"


@given(args=ARGS | JSON)
def test_offer_args_parse_or_raise_command_error(args):
    for model in (OfferArgs, RollbackArgs):
        try:
            a = parse_offer(args, model)
        except CommandError:
            continue
        topics.model_manifest(a.name, a.version)  # a parsed offer always makes valid topics


# ---------------------------------------------------------------- manifests
def _good_payload(tmp: Path) -> dict:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "m.onnx").write_bytes(bytes(range(256)) * 20)
    np.savez(tmp / "golden.npz", **{"input:x": np.zeros((1, 2), np.float32)})
    return build_payload("tiny_add", "1.1", tmp, chunk_size=1024, tolerance={})


GOOD = _good_payload(Path(tempfile.mkdtemp(prefix="sf-fuzz-")))


def _check(raw: bytes, **kw) -> dict | None:
    try:
        return verify_raw(raw, PUB, name="tiny_add", version="1.1", runtime="0.1.0", **kw)
    except UpdateError:
        return None


@given(raw=RAW | st.binary(min_size=1, max_size=64).map(lambda b: b"[" * 5000 + b))
def test_manifest_parser_refuses_junk_with_update_error(raw):
    assert _check(raw) is None  # unsigned junk is never accepted


PATHS = st.sampled_from([("type",), ("name",), ("version",), ("expires",), ("min_runtime",), ("chunk_size",),
                         ("files",), ("files", "m.onnx"), ("files", "m.onnx", "size_bytes"),
                         ("files", "m.onnx", "index"), ("files", "m.onnx", "chunks"), ("files", "m.onnx", "sha256"),
                         ("files", "golden.npz", "index"), ("artifacts",), ("artifacts", 0), ("artifacts", 0, "file"),
                         ("artifacts", 0, "backend"), ("selftest",), ("selftest", "golden"),
                         ("selftest", "latency_ms"), ("selftest", "tolerance"), ("tolerance",), ("total_bytes",)])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.lists(st.tuples(PATHS, JSON), min_size=1, max_size=4))
def test_signed_but_malformed_manifest_is_refused_or_safe_to_use(edits, tmp_path_factory):
    """A manifest signed by the fleet key but built wrong (a buggy publisher): refused with UpdateError, or, if
    accepted, every field the device then uses is well-formed (staging, chunk lookups, writes)."""
    p = copy.deepcopy(GOOD)
    for path, value in edits:
        node = p
        for k in path[:-1]:
            if isinstance(node, dict) and k in node:
                node = node[k]
            elif isinstance(node, list) and isinstance(k, int) and k < len(node):
                node = node[k]
            else:
                node = None
                break
        if isinstance(node, dict):
            node[path[-1]] = value
        elif isinstance(node, list) and isinstance(path[-1], int) and path[-1] < len(node):
            node[path[-1]] = value
    try:
        raw = sign_payload(p, KEY)
    except (TypeError, ValueError):
        assume(False)  # not even JSON-serialisable: cannot be published
    payload = _check(raw)
    if payload is None:
        return
    st_ = Staging(tmp_path_factory.mktemp("stage"), payload)
    assert st_.scan() == 0 and len(st_.missing) == st_.total_chunks
    for fidx, cidx in sorted(st_.missing)[:3]:
        exp = st_.expected(fidx, cidx)
        assert exp is not None and st_.write(fidx, cidx, b"x" * exp[1]) is False


@given(raw=RAW)
def test_signed_document_parser_raises_only_signature_error(raw):
    try:
        sign.parse_document(raw, PUB)
    except sign.SignatureError:
        pass


# ---------------------------------------------------------------- chunks
@given(fidx=st.integers(-2, 70) | st.integers(), cidx=st.integers(-2, 70) | st.integers(),
       data=st.binary(max_size=3000))
def test_chunk_write_never_stores_a_wrong_chunk(fidx, cidx, data, tmp_path_factory):
    st_ = Staging(tmp_path_factory.mktemp("chunks"), GOOD)
    st_.scan()
    try:
        ok = st_.write(fidx, cidx, data)
    except UpdateError:
        return
    exp = st_.expected(fidx, cidx)
    assert ok == (exp is not None and len(data) == exp[1] and hashlib.sha256(data).hexdigest() == exp[0])


@given(suffix=st.text(max_size=40))
def test_chunk_topic_parser(suffix):
    job = Job("tiny_add", "1.1")
    key = _chunk_key(topics.model_base("tiny_add", "1.1") + "/chunk/" + suffix, job)
    assert key is None or (isinstance(key, tuple) and all(isinstance(i, int) for i in key))


# ---------------------------------------------------------------- acks
@given(raw=RAW | st.builds(lambda e, u: json.dumps({"epoch": e, "upto": u}).encode(), JSON, JSON))
def test_ack_parser_returns_epoch_and_int_or_none(raw):
    got = payloads.parse_ack(raw)
    assert got is None or (isinstance(got[0], str) and type(got[1]) is int)


@settings(max_examples=60)
@given(acks=st.lists(st.tuples(st.sampled_from(["mine", "other"]), st.integers(-5, 2 ** 64)), min_size=1, max_size=8))
def test_delivery_never_deletes_beyond_what_it_sent(acks, tmp_path_factory):
    ob = Outbox(tmp_path_factory.mktemp("ob") / "o.db").open()
    try:
        for i in range(20):
            ob.emit(Event("k", {"i": i}))
        ob.note_sent(12)  # rows 13..20 were never handed to MQTT
        d = Delivery(ob, topics.DeviceTopics("s1", "d1"), lambda topic, payload: None)
        for which, upto in acks:
            d.notify_ack(ob.epoch if which == "mine" else "0123456789abcdef", upto)
        d._drain_notes()
        accepted = [u for w, u in acks if w == "mine" and u <= 12]
        want = max([0] + accepted)
        assert d.watermark == want and ob.depth()["events"] == 20 - want
        assert d.stats["acks_refused"] == len(acks) - len(accepted)
    finally:
        ob.close()


# ---------------------------------------------------------------- retained messages read by the fleet tools
@given(raw=RAW)
def test_retained_readers_raise_only_payload_error(raw):
    for check in (payloads.check_state, payloads.check_update_status):
        try:
            check(payloads.decode_object(raw))
        except PayloadError:
            pass
    try:
        payloads.parse_batch(raw)
    except PayloadError:
        pass
