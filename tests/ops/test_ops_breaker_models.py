"""Model circuit breaker on real backend sessions: a real INT8 onnxruntime landmark session wrapped so that it
raises (injected backend errors) runs inside the real pose pipeline on a real photo; the breaker opens, the FP32
fallback answers (people are still found), half-open probes close it again; the fallback chain of a model."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from calibration.photos import load_photo
from edge.app.config import ModelRef
from edge.app.operations import fallback_chain
from edge.backends.auto import open_model
from edge.backends.base import BackendError
from edge.core import decisions
from edge.core.breaker import CLOSED, HALF_OPEN, OPEN, BreakerBoard, BreakerConfig, CircuitOpen, GuardedSession
from edge.core.events import ListSink
from edge.core.frames import Frame
from edge.pose.config import PoseConfig
from edge.pose.pipeline import PosePipeline, landmark_outputs
from models.zoo import ModelZoo

POSE = PoseConfig(segmentation=False)


class FaultySession:
    """A real backend session that raises BackendError while `failing` is set (the injected fault)."""

    def __init__(self, session):
        self.session, self.failing, self.calls = session, False, 0
        self.info, self.inputs, self.outputs = session.info, session.inputs, session.outputs

    def run(self, feeds):
        self.calls += 1
        if self.failing:
            raise BackendError(f"{self.info.backend}: {self.info.path}: injected fault")
        return self.session.run(feeds)

    def close(self):
        self.session.close()


class Clock:
    t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def zoo():
    return ModelZoo()


@pytest.fixture(scope="module")
def detector(zoo):
    return open_model(zoo, ModelRef(name="pose_detection", backend="onnxruntime", precision="fp32"))


def frame(img, i):
    return Frame(img, i, float(i), 1.7e9 + i, t_media=i / 30)


def test_backend_errors_open_the_model_breaker_and_the_fp32_fallback_answers(zoo, detector, tmp_path):
    ref = ModelRef(name="pose_landmark_full", backend="onnxruntime", precision="int8")
    outs = landmark_outputs(POSE)
    faulty = FaultySession(open_model(zoo, ref, outputs=outs))
    assert faulty.info.precision == "int8"
    chain = fallback_chain(zoo, ref, faulty, ["fp32"], outs)
    assert [label for label, _ in chain] == ["fp32 onnxruntime/fp32"]
    clock, sink = Clock(), ListSink()
    board = BreakerBoard(BreakerConfig(max_errors=3, window_s=10, open_s=2, probe_samples=3), sink=sink, clock=clock)
    guarded = GuardedSession(faulty, board.get("model", "pose_landmarks"), chain)
    pipe = PosePipeline.from_sessions(POSE, detector, guarded)
    img = load_photo("astronaut")
    log = decisions.DecisionLog(tmp_path / "d").open()
    decisions.set_default(log)
    try:
        for i in range(3):
            assert len(pipe.process(frame(img, i)).people) == 1
        assert guarded.active == "primary" and guarded.fallback is None
        faulty.failing = True
        for i in range(3, 6):  # every failing call is answered by the FP32 fallback: the person stays
            res = pipe.process(frame(img, i))
            assert len(res.people) == 1 and res.people[0].score > 0.9
        b = guarded.breaker
        assert b.state == OPEN and b.last.reason == "backend_errors" and "injected fault" in b.last.summary
        assert guarded.active == "fp32 onnxruntime/fp32" and guarded.info.precision == "fp32"
        calls = faulty.calls
        for i in range(6, 10):  # open: the primary is not called at all
            assert len(pipe.process(frame(img, i)).people) == 1
        assert faulty.calls == calls and guarded.fallback_calls == 3 + 4
        clock.t += 2
        assert b.state == HALF_OPEN  # the next call is a probe of the primary: it still fails
        assert len(pipe.process(frame(img, 10)).people) == 1
        assert b.state == OPEN and b.last.reason == "probe_failed" and b.last.open_for_s == 4
        faulty.failing = False  # the fault is gone
        clock.t += 4
        for i in range(11, 14):
            assert len(pipe.process(frame(img, i)).people) == 1
        assert b.state == CLOSED and guarded.active == "primary" and guarded.info.precision == "int8"
        assert REGISTRY.get_sample_value("edge_circuit_state", {"breaker": "pose_landmarks", "scope": "model"}) == 0
        assert [(e.data["from"], e.data["to"], e.data["reason"]) for e in sink.events] == [
            (CLOSED, OPEN, "backend_errors"), (OPEN, HALF_OPEN, "cooldown"), (HALF_OPEN, OPEN, "probe_failed"),
            (OPEN, HALF_OPEN, "cooldown"), (HALF_OPEN, CLOSED, "probes_ok")]
        log.flush()
        recs = list(decisions.read_decisions(tmp_path / "d"))
        assert [r["data"]["to"] for r in recs if r["kind"] == "circuit"] == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]
        (fb,) = [r for r in recs if r["kind"] == "model_fallback"]
        assert fb["data"]["action"] == "loaded" and fb["data"]["precision"] == "fp32" and fb["data"]["load_ms"] > 0
    finally:
        decisions.set_default(None)
        log.close()


def test_without_a_fallback_the_error_reaches_the_caller_then_circuit_open(zoo, detector):
    ref = ModelRef(name="pose_landmark_full", backend="onnxruntime", precision="fp32")
    faulty = FaultySession(open_model(zoo, ref))
    faulty.failing = True
    assert fallback_chain(zoo, ref, faulty, ["fp32"]) == []  # already FP32: no FP32 fallback
    guarded = GuardedSession(faulty, BreakerBoard(BreakerConfig(max_errors=2), clock=Clock()).get("model", "x"), [])
    feeds = {faulty.inputs[0].name: load_photo("astronaut")[None, :256, :256].astype("float32") / 255}
    for _ in range(2):
        with pytest.raises(BackendError, match="injected fault"):
            guarded.run(feeds)
    with pytest.raises(CircuitOpen, match="circuit open .*no fallback"):
        guarded.run(feeds)
    assert faulty.calls == 2


def test_fallback_chain_order_and_what_exists(zoo):
    from edge.backends.registry import available_backends

    ref = ModelRef(name="pose_landmark_full", backend="openvino", precision="int8")
    session = open_model(zoo, ref)
    chain = [label for label, _ in fallback_chain(zoo, ref, session, ["previous_version", "fp32", "other_backend"])]
    others = [b for b, (ok, _) in available_backends().items() if ok and b != "openvino"]
    # no update was installed in this cache: no previous version to fall back to
    assert chain[0] == "fp32 openvino/fp32"
    assert chain[1:] == [f"other_backend {others[0]}/fp32"]
    label, factory = fallback_chain(zoo, ref, session, ["other_backend"])[0]
    s = factory()  # factories load only when called
    assert s.info.backend == others[0] and s.info.precision == "fp32"


def test_previous_version_fallback_loads_the_kept_version(zoo, tmp_path):
    """The update agent keeps the previous version (agent.json `previous`): the model falls back to its files."""
    import json

    real = zoo.model_dir("pose_landmark_full")
    mdir = tmp_path / "models" / "pose_landmark_full"
    mdir.mkdir(parents=True)
    (mdir / real.name).symlink_to(real)
    kept = mdir / "0.9.0"  # the kept previous version (same files here; its built.json says 0.9.0, as an update's)
    kept.mkdir()
    for f in real.iterdir():
        if f.name != "built.json":
            (kept / f.name).symlink_to(f)
    doc = json.loads((real / "built.json").read_text())
    doc["payload"]["version"] = "0.9.0"  # unsigned for this cache (no key here: the zoo only warns)
    (kept / "built.json").write_text(json.dumps(doc))
    (tmp_path / "updates").mkdir()
    (tmp_path / "updates" / "agent.json").write_text(json.dumps({"models": {"pose_landmark_full": {
        "previous": "0.9.0"}}}))
    tzoo = ModelZoo(tmp_path)
    ref = ModelRef(name="pose_landmark_full", backend="onnxruntime", precision="int8")
    session = open_model(tzoo, ref)
    chain = fallback_chain(tzoo, ref, session, ["previous_version", "fp32"])
    assert [label for label, _ in chain] == ["previous_version 0.9.0 onnxruntime/int8", "fp32 onnxruntime/fp32"]
    prev = chain[0][1]()
    assert "/0.9.0/" in prev.info.path and prev.info.precision == "int8"


def test_a_fallback_that_batches_less_runs_the_batch_in_chunks(zoo):
    ref = ModelRef(name="pose_landmark_full", backend="onnxruntime", precision="fp32")
    faulty = FaultySession(open_model(zoo, ref))
    faulty.failing, faulty.max_batch = True, 3  # the primary took batches of 3
    fallback = open_model(zoo, ModelRef(name="pose_landmark_full", backend="tflite", precision="fp32"))
    assert fallback.max_batch == 1
    guarded = GuardedSession(faulty, BreakerBoard(BreakerConfig(), clock=Clock()).get("model", "y"),
                             [("tflite", lambda: fallback)])
    inputs, _ = zoo.golden(ref.name)
    x = {k: v[:1].repeat(3, axis=0) for k, v in inputs.items()}
    out = guarded.run(x)
    one = fallback.run({k: v[:1] for k, v in inputs.items()})
    assert out["Identity"].shape[0] == 3 and all((out["Identity"][i] == one["Identity"][0]).all() for i in range(3))
