"""Application layer: CLI, runner, config composition root, doctor. Nothing below imports it."""
