"""The deployed-like pose stage for try-on tests: BlazePose detector + landmarks on OpenVINO FP32, segmentation on,
from the real model cache (the try-on fixtures point STOREFRONT_EDGE_CACHE at a temporary folder, so the cache is
read when this module is imported)."""
from __future__ import annotations

import pytest

from edge.core.paths import cache_dir

REAL_CACHE = cache_dir()


def fp32_pose_pipeline():
    """A PosePipeline (one person, segmentation) on the built models; fails the test if they are not built."""
    from edge.app.config import ModelsSection
    from edge.pose.config import PoseConfig
    from edge.pose.pipeline import PosePipeline
    from models.zoo import ModelNotBuilt, ModelZoo

    m = ModelsSection()
    models = m.model_copy(update={
        "pose_detector": m.pose_detector.model_copy(update={"backend": "openvino", "precision": "fp32"}),
        "pose_landmarks": m.pose_landmarks.model_copy(update={"backend": "openvino", "precision": "fp32"})})
    try:
        return PosePipeline((PoseConfig(max_people=1, segmentation=True), models), zoo=ModelZoo(REAL_CACHE))
    except ModelNotBuilt as e:
        pytest.fail(f"the pose models are not built (run `edge models build`): {e}")
