"""`edge bench tryon` writes its keys: the existing FPS and motion-to-photon keys, the side-by-side previous-fit
and gestures on/off keys and the fit-quality keys (a short run: one size, one photo, one clip, one garment, a few frames)."""
from __future__ import annotations

import argparse
import json

from edge.core.paths import cache_dir

REAL_CACHE = cache_dir()  # read at import, before the try-on fixtures point the cache at a temporary folder


def test_bench_tryon_writes_fps_latency_and_fit_quality_keys(tmp_path, monkeypatch):
    from devtools.bench import tryon

    monkeypatch.setenv("STOREFRONT_EDGE_CACHE", str(REAL_CACHE))  # built pose models and package photos
    p = argparse.ArgumentParser()
    tryon.add_arguments(p)
    out = tmp_path / "tryon.json"
    args = p.parse_args(["--sizes", "640x480", "--seconds", "1", "--render-frames", "4", "--stock-frames", "2",
                         "--quality-frames", "4", "--quality-photos", "astronaut", "--quality-clips",
                         "astronaut_zoom", "--quality-skus", "TEE-001"])
    args.json = str(out)
    assert tryon.run(args) == 0
    res = json.loads(out.read_text())
    for key in ("render_fps_stock_640", "render_fps_fast_640", "e2e_fps_640", "m2p_p50_ms_640", "m2p_p95_ms_640",
                "e2e_fps_cam60_640", "m2p_p95_ms_cam60_640", "e2e_fps_prev_640", "m2p_p95_ms_prev_640",
                "e2e_fps_ratio_640", "loadavg_start", "loadavg_end", "loadavg_e2e_640"):
        assert isinstance(res[key], (int, float)), key
    assert res["e2e_fps_640"] > 0 and res["e2e_fps_prev_640"] > 0
    # gestures on vs off, side by side on zidane.jpg: the hand models really ran and found his hand
    assert res["gesture_source"] == "zidane" and res["gestures_shipped"] is True  # tryon-mirror.toml
    for key in ("e2e_fps_gestures_640", "e2e_fps_no_gestures_640", "e2e_fps_gestures_ratio_640",
                "m2p_p95_ms_gestures_640", "e2e_fps_cam60_gestures_640", "e2e_fps_cam60_gestures_ratio_640"):
        assert isinstance(res[key], (int, float)) and res[key] > 0, key
    # hands ran (how often depends on the box: they yield to the picture down to 8 Hz) and found his hand
    assert 0.1 <= res["hands_run_share_640"] <= 1.0 and res["hands_seen_share_640"] > 0.5
    assert res["hands_ms_p50_640"] > 0 and 1 <= res["hands_every_mean_640"] <= 6  # yield_to_picture: 1..MAX_EVERY
    assert res["pose_stage"].startswith("model")
    for suffix in ("", "_prev"):
        assert 0.0 <= res[f"fit_precision{suffix}"] <= 1.0
        assert 0.0 <= res[f"fit_coverage{suffix}"] <= 1.0
        assert isinstance(res[f"fragments_max{suffix}"], int) and res[f"fragments_max{suffix}"] >= 1
        assert res[f"jitter_px_p95{suffix}"] >= 0.0
    q = res["quality"]
    assert set(q) == {"photo:astronaut/TEE-001", "photo:astronaut/TEE-001_prev", "clip:astronaut_zoom/TEE-001",
                      "clip:astronaut_zoom/TEE-001_prev"}
    still, clip = q["photo:astronaut/TEE-001"], q["clip:astronaut_zoom/TEE-001"]
    assert still["frames"] == 4 and still["dressed"] == 4 and "jitter_px_p95" in still
    assert clip["frames"] == 4 and "jitter_px_p95" not in clip  # jitter only on a still person
    assert res["fit_precision"] == min(still["fit_precision"], clip["fit_precision"])
