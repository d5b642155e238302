"""Shopper analytics stage: a ByteTrack-style tracker over edge.core.detections.Detections, then small objects
(zones with dwell, line counters, queues, loitering, shelf interactions, heatmaps, kiosk help) that turn tracked
detections and the stream time into events. See docs/ANALYTICS.md."""
