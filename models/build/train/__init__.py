"""Quantization-aware training and distillation of the pose landmark model (build time, `train` venv only).

Runs inside the isolated `train` build venv (torch, onnx2torch, NNCF, OpenVINO); never imported by `edge run`.
Modules are plain scripts' libraries: they import nothing from `edge` so they run on any machine with the venv.
"""
