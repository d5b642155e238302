"""Model file sniffing and structural checks, run before a file reaches a runtime.

Runtimes verify files too, but their messages are vague ("Protobuf parsing failed") and a native crash would take
the whole process down, so each format is checked here in pure Python: TFLite flatbuffer identifier and buffer
bounds, ONNX protobuf wire format, OpenVINO IR xml + bin sizes. Errors are ModelLoadError naming backend and file.
"""
from __future__ import annotations

import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from edge.backends.base import ModelLoadError, check_model_file

FORMAT_NAMES = {"tflite": "a TFLite flatbuffer", "onnx": "an ONNX protobuf", "ir": "an OpenVINO IR (.xml + .bin)",
                "unknown": "of no known model format"}


def sniff(path: Path) -> str:
    """'tflite' | 'onnx' | 'ir' | 'unknown', from the first bytes (never the suffix alone)."""
    with open(path, "rb") as f:
        head = f.read(64)
    if len(head) >= 8 and head[4:8] == b"TFL3":
        return "tflite"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"<?xml") or text.startswith(b"<net"):
        return "ir"
    # ONNX ModelProto starts with field 1 (ir_version, varint) as written by onnx.save / tf2onnx / torch.
    if len(head) >= 2 and head[0] == 0x08 and head[1] < 0x80 and 3 <= head[1] <= 20:
        return "onnx"
    return "unknown"


def validate(path: Path, backend: str, accept: tuple[str, ...]) -> str:
    """Check the file exists, is of an accepted format and is structurally whole; return the format."""
    path = check_model_file(path, backend)
    try:
        fmt = sniff(path)
    except OSError as e:  # exists but unreadable (permissions, an I/O error of the storage)
        raise ModelLoadError(f"{backend}: cannot read {path}: {e.strerror or e} (fix: check the file's permissions "
                             "and the storage)") from None
    if fmt not in accept:
        want = " or ".join(FORMAT_NAMES[a] for a in accept)
        raise ModelLoadError(f"{backend}: cannot load {path}: the file is {FORMAT_NAMES[fmt]}, "
                             f"this backend needs {want}")
    try:
        {"tflite": _check_tflite, "onnx": _check_onnx, "ir": _check_ir}[fmt](path)
    except _Corrupt as e:
        raise ModelLoadError(f"{backend}: cannot load {path}: {e}") from None
    except Exception as e:  # noqa: BLE001 - any parse failure of a damaged file
        raise ModelLoadError(f"{backend}: cannot load {path}: corrupt {fmt} file ({type(e).__name__}: {e})") from None
    return fmt


class _Corrupt(Exception):
    pass


def _fail(path: Path, why: str):
    raise _Corrupt(why)


# ---------------------------------------------------------------- TFLite

def _check_tflite(path: Path) -> None:
    data = path.read_bytes()
    size = len(data)
    if size < 16:
        _fail(path, f"truncated TFLite file ({size} bytes)")
    (root,) = struct.unpack_from("<I", data, 0)
    if root + 4 > size:
        _fail(path, f"truncated TFLite file: root table at {root} is past the end ({size} bytes)")
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:  # tflite-runtime ships no schema: the identifier and root checks above must do
        return
    try:
        _check_tflite_tables(path, schema.Model.GetRootAs(data, 0), size)
    except (struct.error, IndexError) as e:
        _fail(path, f"truncated or corrupt TFLite file: a flatbuffer offset points outside the {size}-byte file ({e})")


def _check_tflite_tables(path: Path, m, size: int) -> None:
    if m.SubgraphsLength() < 1:
        _fail(path, "TFLite model has no subgraph")
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        o = b._tab.Offset(4)  # Buffer.data
        if o:
            start, n = b._tab.Vector(o), b._tab.VectorLen(o)
            if start + n > size:
                _fail(path, f"truncated TFLite file: buffer {i} ends at byte {start + n}, file has {size}")
        off, sz = b.Offset(), b.Size()  # weights stored after the flatbuffer (large models)
        if off > 1 and off + sz > size:
            _fail(path, f"truncated TFLite file: buffer {i} ends at byte {off + sz}, file has {size}")
    g = m.Subgraphs(0)
    if g.InputsLength() < 1 or g.OutputsLength() < 1 or g.TensorsLength() < 1:
        _fail(path, "TFLite subgraph 0 has no inputs, outputs or tensors")


# ---------------------------------------------------------------- ONNX

def _varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    shift = val = 0
    while True:
        if i >= end or shift > 63:
            raise ValueError(f"bad varint at byte {i}")
        b = buf[i]
        i += 1
        val |= (b & 0x7F) << shift
        if b < 0x80:
            return val, i
        shift += 7


def _walk(buf: memoryview, start: int, end: int) -> dict[int, list[tuple[int, int]]]:
    """Parse one protobuf message's fields; field -> [(start, end)] of length-delimited payloads (else (i, i))."""
    fields: dict[int, list[tuple[int, int]]] = {}
    i = start
    while i < end:
        key, i = _varint(buf, i, end)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise ValueError(f"field number 0 at byte {i}")
        if wt == 0:
            _, i = _varint(buf, i, end)
            span = (i, i)
        elif wt == 1:
            i += 8
            span = (i, i)
        elif wt == 5:
            i += 4
            span = (i, i)
        elif wt == 2:
            n, i = _varint(buf, i, end)
            span = (i, i + n)
            i += n
        else:
            raise ValueError(f"invalid wire type {wt} at byte {i}")
        if i > end:
            raise ValueError(f"field {num} runs past the end of its message ({i} > {end})")
        fields.setdefault(num, []).append(span)
    return fields


def _check_onnx(path: Path) -> None:
    buf = memoryview(path.read_bytes())
    try:
        model = _walk(buf, 0, len(buf))
    except ValueError as e:
        _fail(path, f"truncated or corrupt ONNX protobuf: {e}")
    if 7 not in model:
        _fail(path, "ONNX model has no graph")
    gs, ge = model[7][0]
    try:
        graph = _walk(buf, gs, ge)
        for node_span in graph.get(1, []):  # NodeProto: op_type is field 4
            _walk(buf, *node_span)
        for init_span in graph.get(5, []):  # TensorProto initializers
            _walk(buf, *init_span)
    except ValueError as e:
        _fail(path, f"corrupt ONNX graph: {e}")
    if not graph.get(11) or not graph.get(12):
        _fail(path, "ONNX graph has no inputs or no outputs")


# ---------------------------------------------------------------- OpenVINO IR

def ir_bin_path(xml: Path) -> Path:
    return xml.with_suffix(".bin")


def _check_ir(path: Path) -> None:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        _fail(path, f"truncated or corrupt IR xml: {e}")
    if root.tag != "net":
        _fail(path, f"IR xml root is <{root.tag}>, expected <net>")
    need = 0
    for d in root.iter("data"):
        off, sz = d.get("offset"), d.get("size")
        if off is not None and sz is not None:
            need = max(need, int(off) + int(sz))
    binp = ir_bin_path(path)
    if need:
        if not binp.is_file():
            _fail(path, f"IR weights file {binp.name} is missing")
        have = binp.stat().st_size
        if have < need:
            _fail(path, f"IR weights file {binp.name} is truncated: {have} bytes, the xml needs {need}")
