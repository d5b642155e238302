"""MediaPipe Pose reference worker: runs inside the MediaPipe venv (stdlib + numpy + mediapipe only).

Protocol on stdin/stdout, every message = 4-byte big-endian length + JSON header, then 4-byte length + body bytes.
Requests: {"cmd": "open", "name", "static", "smooth", "segmentation"}; {"cmd": "process", "name", "h", "w"} with
an HxWx3 uint8 BGR body; {"cmd": "close", "name"}; {"cmd": "quit"}. Replies: {"ok": true, ...} with an empty body
(process: "ms" = Pose.process time only, "landmarks" 33x[x, y, z, visibility, presence] in px or null,
"world" 33x[x, y, z] metres or null), or {"ok": false, "error": "..."}.
"""
import json
import os
import struct
import sys
import time


def _read_exact(f, n):
    buf = b""
    while len(buf) < n:
        chunk = f.read(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


def _read_msg(f):
    (hn,) = struct.unpack(">I", _read_exact(f, 4))
    header = json.loads(_read_exact(f, hn))
    (bn,) = struct.unpack(">I", _read_exact(f, 4))
    return header, _read_exact(f, bn) if bn else b""


def _write_msg(f, header, body=b""):
    h = json.dumps(header).encode()
    f.write(struct.pack(">I", len(h)) + h + struct.pack(">I", len(body)) + body)
    f.flush()


def main():
    # Keep the protocol channel private: native libraries may print to fd 1, so point fd 1 at stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    inp = sys.stdin.buffer
    import numpy as np
    import mediapipe as mp

    poses = {}
    _write_msg(out, {"ok": True, "mediapipe": mp.__version__, "numpy": np.__version__})
    while True:
        try:
            req, body = _read_msg(inp)
        except EOFError:
            break
        cmd = req.get("cmd")
        try:
            if cmd == "open":
                old = poses.pop(req["name"], None)
                if old is not None:
                    old.close()
                poses[req["name"]] = mp.solutions.pose.Pose(
                    static_image_mode=bool(req.get("static", False)), model_complexity=1,
                    smooth_landmarks=bool(req.get("smooth", True)),
                    enable_segmentation=bool(req.get("segmentation", False)))
                _write_msg(out, {"ok": True})
            elif cmd == "process":
                h, w = int(req["h"]), int(req["w"])
                bgr = np.frombuffer(body, np.uint8).reshape(h, w, 3)
                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                t0 = time.perf_counter()
                res = poses[req["name"]].process(rgb)
                ms = (time.perf_counter() - t0) * 1e3
                lm = world = None
                if res.pose_landmarks is not None:
                    lm = [[p.x * w, p.y * h, p.z * w, p.visibility, p.presence] for p in res.pose_landmarks.landmark]
                if res.pose_world_landmarks is not None:
                    world = [[p.x, p.y, p.z] for p in res.pose_world_landmarks.landmark]
                _write_msg(out, {"ok": True, "ms": ms, "landmarks": lm, "world": world})
            elif cmd == "close":
                p = poses.pop(req["name"], None)
                if p is not None:
                    p.close()
                _write_msg(out, {"ok": True})
            elif cmd == "quit":
                _write_msg(out, {"ok": True})
                break
            else:
                _write_msg(out, {"ok": False, "error": f"unknown command {cmd!r}"})
        except Exception as e:  # noqa: BLE001 - report to the parent, keep serving
            _write_msg(out, {"ok": False, "error": f"{type(e).__name__}: {e}"})
    for p in poses.values():
        p.close()


if __name__ == "__main__":
    main()
