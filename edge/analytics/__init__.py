"""Shopper analytics stage: zones, lines, dwell, queues (consumes pose/detections, emits events)."""
