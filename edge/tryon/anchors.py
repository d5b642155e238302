"""The garment anchor format: the anchor JSON's format tag, the body anchors and the reference body.

Shared by the catalogue loader (`garments`), the procedural builders (`garment_builders`) and the fitter
(`fitting`); it imports nothing from them, so they all depend on it one way.
"""
from __future__ import annotations

ANCHOR_FORMAT = "storefront-edge/garment-anchors@1"
# torso: origin mid-shoulders; upper arms: origin shoulder, -y toward elbow; forearms: origin elbow, -y toward
# wrist; head: origin mid-ears, the eye midpoint at (0, eye_height, eye_depth) (up to scale), uniform scale by
# ear width; eyes: origin mid-eyes (nose bridge), x along the eye line scaled by the inter-eye distance, y/z by
# ear width (eyewear). All: +x wearer's left, +y up, +z forward (out of the chest / face).
ANCHORS = ("torso", "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm", "head", "eyes")
# Reference body (landmark-to-landmark, metres). Head: ear landmarks 0.15 apart, eye landmarks 0.063 apart, the
# eye line 0.015 above and 0.085 in front of the ear landmarks (BlazePose on real faces).
DEFAULT_REF = {"shoulder_width": 0.36, "torso_length": 0.50, "upper_arm": 0.28, "forearm": 0.25, "ear_width": 0.15,
               "eye_width": 0.063, "eye_height": 0.015, "eye_depth": 0.085}
