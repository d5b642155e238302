"""Frame sources and the factory that builds one from the [source] config section."""
from __future__ import annotations

from edge.sources.base import FrameSource, LatestFrameReader, SourceError


def make_source(cfg, *, demo_scene: str = "mirror") -> FrameSource:
    """Build the source a SourceSection describes."""
    kw = dict(width=cfg.width, height=cfg.height, fps=cfg.fps)
    if cfg.type in ("camera", "video", "rtsp"):
        from edge.sources.opencv_capture import CaptureSource

        if not cfg.uri:
            raise SourceError(f"source.uri is empty for source.type = {cfg.type!r}")
        if cfg.type == "video":
            kw["start_time"] = cfg.start_time
        return CaptureSource(cfg.type, cfg.uri, loop=cfg.loop, realtime=cfg.realtime, **kw)
    kw["start_time"] = cfg.start_time
    if cfg.type == "images":
        from edge.sources.images import ImageFolderSource

        return ImageFolderSource(cfg.uri, loop=cfg.loop, realtime=cfg.realtime, **kw)
    from edge.sources.demo import DemoSource

    return DemoSource(cfg.uri or demo_scene, loop=cfg.loop, realtime=cfg.realtime, **kw)


__all__ = ["FrameSource", "LatestFrameReader", "SourceError", "make_source"]
