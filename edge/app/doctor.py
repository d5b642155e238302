"""`edge doctor [--config FILE] [--json PATH]`: is this device ready to run?

Reports installed inference backends (version, or why unusable), EGL (an offscreen pyrender context in a
subprocess), the model cache (built artefacts, sha256-verified), with --config its sources (camera device, video
file, image folder present), whether its outbox and decision log folders are writable and an outbox already there
can be opened, broker reachability and the broker's password and TLS files, the CPU flags and INT8 class (AVX2
only / AVX-512 VNNI / AVX-VNNI / AMX / ARM dot-product) and which precision each model gets here and why.
Exit 0 when the device can run; 1 with the reasons otherwise. Problems that only degrade (no broker
reachable: events wait in the local outbox; no EGL without try-on) are warnings.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

EGL_PROBE = r"""
import json, os
os.environ["PYOPENGL_PLATFORM"] = "egl"
import numpy as np
if not hasattr(np, "infty"):
    np.infty = np.inf  # pyrender 0.1.45 on numpy 2
import pyrender
r = pyrender.OffscreenRenderer(16, 16)
from OpenGL import GL
print(json.dumps({"renderer": GL.glGetString(GL.GL_RENDERER).decode(),
                  "version": GL.glGetString(GL.GL_VERSION).decode()}))
r.delete()
"""


def add_arguments(p) -> None:
    p.add_argument("--config", metavar="FILE", help="device config: check its models, try-on EGL need, sources, "
                   "outbox and decision log folders, broker and its credential files")
    p.add_argument("--json", metavar="PATH", help="write the report as JSON to PATH ('-' = stdout)")
    p.add_argument("--egl-timeout", type=float, default=30.0, help="seconds for the EGL probe (default 30)")
    p.add_argument("--broker-timeout", type=float, default=3.0, help="seconds for the broker TCP connect "
                   "(default 3)")
    p.add_argument("--cpuinfo", metavar="FILE", help="judge the CPU class and precisions from FILE (another device's "
                   "/proc/cpuinfo) instead of this machine's")


def check_backends() -> dict:
    from edge.backends.registry import available_backends

    out = {}
    for name, (ok, what) in available_backends().items():
        out[name] = {"usable": ok, ("version" if ok else "reason"): what}
    if out.get("onnxruntime", {}).get("usable"):
        import onnxruntime as ort

        out["onnxruntime"]["providers"] = ort.get_available_providers()
    if out.get("openvino", {}).get("usable"):
        try:
            from edge.backends.openvino_backend import core

            out["openvino"]["devices"] = core().available_devices
        except Exception as e:  # noqa: BLE001 - a broken plug-in is a finding, not a crash
            out["openvino"] |= {"usable": False, "reason": f"ov.Core() failed: {e}"}
    return out


def check_egl(timeout: float) -> dict:
    env = dict(os.environ, PYOPENGL_PLATFORM="egl")
    try:
        r = subprocess.run([sys.executable, "-c", EGL_PROBE], capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"EGL context creation hung for {timeout:.0f} s"}
    if r.returncode != 0:
        last = (r.stderr.strip().splitlines() or [f"exit code {r.returncode}"])[-1]
        return {"ok": False, "reason": f"no EGL context: {last} (install libegl1 libegl-mesa0 libgl1-mesa-dri)"}
    try:
        return {"ok": True, **json.loads(r.stdout.strip().splitlines()[-1])}
    except (ValueError, IndexError):
        return {"ok": False, "reason": f"EGL probe printed no renderer: {r.stdout[-200:]!r}"}


INT8_NOTES = {
    "amx": "AMX and VNNI: INT8 convolutions run natively (32-bit accumulation)",
    "avx512_vnni": "VNNI: INT8 convolutions run natively (32-bit accumulation)",
    "avx_vnni": "VNNI: INT8 convolutions run natively (32-bit accumulation)",
    "avx2": "no VNNI: INT8 sums in 16 bits; PTQ INT8 (built with the overflow fix) holds its gates at 1.2-1.3x FP32 "
            "on an AVX2-only EPYC (docs/BENCHMARKS.md); QAT INT8 (no overflow fix) saturates there",
    "x86_old": "no AVX2: INT8 and FP32 both run on SSE kernels; FP32 is the safe default",
    "arm_dotprod": "ARM dot-product (SDOT/UDOT): INT8 convolutions run natively",
    "arm": "ARM without dot-product: INT8 gains little; FP32 is the safe default",
    "unknown": "CPU flags unreadable: FP32 is the safe default",
}


def check_cpu(cpuinfo: str | None = None) -> dict:
    """CPU model, INT8-relevant flags and class (edge.backends.auto), and whether QAT INT8 is used: this machine's,
    or those of a /proc/cpuinfo text."""
    from edge.backends.auto import (CPU_CLASSES, INT8_CPU_FLAGS, bf16_supported, cpu_class, cpu_flags, cpu_model,
                                    int8_qat_supported)

    flags = cpu_flags(cpuinfo)
    cls = cpu_class(flags)
    qat_ok, qat_why = int8_qat_supported(cls)
    bf16_ok, bf16_why = bf16_supported(flags)
    out = {"model": cpu_model(cpuinfo), "cores": os.cpu_count() if cpuinfo is None else None,
           "flags": {f: f in flags for f in INT8_CPU_FLAGS},
           "class": cls, "class_name": CPU_CLASSES[cls], "int8_note": INT8_NOTES[cls],
           "int8_qat": {"used": qat_ok, "why": qat_why}, "bf16": {"used": bf16_ok, "why": bf16_why}}
    if not flags:
        out["reason"] = "no `flags` / `Features` line in /proc/cpuinfo"
    return out


def check_precisions(cfg, usable: list[str], cpu: dict) -> list[dict]:
    """Per configured model and backend it may run on: the precision it gets on this device and why (the
    manifest's measured reason for "default"; QAT INT8 only where the CPU class runs it, edge.backends.auto)."""
    from edge.backends.auto import _precision, bf16_default
    from models.zoo import ModelZoo

    try:
        zoo = ModelZoo(cache_dir=(cfg.models.cache_dir or None) if cfg is not None else None)
    except Exception as e:  # noqa: BLE001 - reported by check_models already
        return [{"error": str(e)}]
    refs = [ref for ref, _ in _required_refs(cfg)]
    out = []
    for ref in refs:
        for b in (usable if ref.backend == "auto" else [b for b in (ref.backend,) if b in usable]):
            row = {"name": ref.name, "backend": b, "requested": ref.precision, "auto": ref.backend == "auto"}
            try:
                m = zoo.manifest(ref.name)
                prec = _precision(zoo, ref.name, b, ref.precision, cpu=cpu["class"],
                                  flags={f for f, on in cpu["flags"].items() if on})
            except KeyError as e:  # unknown model, or no artefact (so no default) for this backend
                out.append(row | {"precision": None, "why": str(e).strip("'\"")})
                continue
            if ref.precision == "default" and prec == "bf16" != m["defaults"][b]["precision"]:
                why = f"manifest default on CPUs with native bf16: {m['bf16']['reason']}"
            elif ref.precision == "default":
                why = f"manifest default: {m['defaults'][b]['reason']}"
            elif prec != ref.precision and ref.precision == "bf16":  # a CPU without native bf16
                why = f"bf16 asked for, {prec} used: {cpu['bf16']['why']}"
            elif prec != ref.precision:  # int8_qat that this CPU cannot run or that was not built
                why = (f"{ref.precision} asked for, {prec} used: "
                       + (cpu["int8_qat"]["why"] if not cpu["int8_qat"]["used"] and b != "tflite" else
                          "no such artefact was built (trained files missing or not verified at build time)"))
            else:
                why = f"configured (precision = \"{ref.precision}\")"
            if prec.startswith("int8"):
                why += f"; CPU: {cpu['int8_qat']['why'] if prec.endswith('_qat') and b != 'tflite' else cpu['int8_note']}"
            elif prec == "bf16":
                why += f"; CPU: {cpu['bf16']['why']}"
            built = any(a.backend == b and a.precision == prec for a in zoo.artifacts(ref.name))
            out.append(row | {"precision": prec, "built": built, "why": why})
    for name in zoo.names():  # QAT INT8 artefacts: used only when asked for, and only on a CPU class that runs them
        if any(a["precision"] == "int8_qat" for a in zoo.manifest(name)["artifacts"]):
            out.append({"name": name, "backend": "*", "requested": "int8_qat", "precision": None if not
                        cpu["int8_qat"]["used"] else "int8_qat", "why": cpu["int8_qat"]["why"] + (
                            " (TFLite's INT8 of the QAT weights runs on any CPU)" if not cpu["int8_qat"]["used"]
                            else "; used where a device sets precision = \"int8_qat\"")})
        if any(a["precision"] == "bf16" for a in zoo.manifest(name)["artifacts"]):
            out.append({"name": name, "backend": "*", "requested": "bf16",
                        "precision": "bf16" if cpu["bf16"]["used"] else None,
                        "why": cpu["bf16"]["why"] + (
                            "" if not cpu["bf16"]["used"] else
                            "; the OpenVINO default on this CPU (manifest [bf16] default_on_bf16_cpus)"
                            if bf16_default(zoo.manifest(name)) else "; used where a device sets precision = \"bf16\"")})
    return out


def check_broker(cfg, timeout: float) -> dict:
    if cfg is None or not cfg.sync.broker:
        return {"configured": False, "reachable": None,
                "note": "no broker configured: events stay in the local outbox"}
    host, port = cfg.sync.broker, cfg.sync.port
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return {"configured": True, "broker": f"{host}:{port}", "reachable": True}
    except OSError as e:
        return {"configured": True, "broker": f"{host}:{port}", "reachable": False,
                "note": f"TCP connect failed ({e}); events wait in the local outbox until it is reachable"}


def sync_file_problems(cfg) -> list[str]:
    """Why `edge run` could not start its MQTT client with this [sync] (it reads the password file and loads the
    TLS files at start): a file missing or unreadable, an empty password file, TLS files that do not load. [] when
    no broker is configured (nothing is read then)."""
    import ssl

    from sync.client import Tls
    from sync.config import PasswordFileError

    s = cfg.sync if cfg is not None else None
    if s is None or not s.broker:
        return []
    out = []
    if s.password_file:
        try:
            s.resolved_password()
        except OSError as e:
            out.append(f"sync.password_file: cannot read {s.password_file}: {e.strerror} (fix: put the broker "
                       "password on the first line of that file, or correct the path)")
        except PasswordFileError as e:
            out.append(f"sync.password_file: {s.password_file} is empty (fix: put the broker password on its "
                       "first line)" if e.empty else f"sync.password_file: {s.password_file} is not UTF-8 text "
                       "(fix: put the broker password on its first line, saved as UTF-8)")
    if not s.tls:
        return out
    files = [(k, getattr(s, k)) for k in ("ca_file", "cert_file", "key_file") if getattr(s, k)]
    missing = [f"sync.{k}: {v} not found (fix: copy it to the device, e.g. from `edge fleet provision`'s output, "
               "or correct the path)" for k, v in files if not Path(v).is_file()]
    if missing:
        return out + missing
    try:
        Tls(s.ca_file, s.cert_file, s.key_file).context()
    except (OSError, ssl.SSLError) as e:  # not PEM, or a key that is not the certificate's
        out.append(f"sync: the TLS files do not load ({', '.join(v for _, v in files)}): {e} (fix: use the PEM "
                   "files `edge fleet provision` wrote for this device)")
    return out


def _source_problem(src, key: str) -> str | None:
    """Why a `[source]` cannot deliver frames on this machine (a missing camera device, video file or image
    folder), or None. Cameras are not opened: a running `edge run` may hold them; rtsp and demo are not checked."""
    uri = src.uri
    if src.type == "camera":
        dev = Path(f"/dev/video{uri}") if uri.isdigit() else Path(uri)
        if not dev.exists():
            return (f"{key}: camera {dev} not found (fix: plug the camera in, or set {key}.uri to a device that "
                    "exists, e.g. one listed by `ls /dev/video*`)")
    elif src.type == "video" and not Path(uri).is_file():
        return f"{key}: video file {uri} not found (fix: set {key}.uri to the video file's path)"
    elif src.type == "images" and not Path(uri).is_dir():
        return f"{key}: image folder {uri} not found (fix: set {key}.uri to the image folder's path)"
    return None


def check_sources(cfg, problems: list[str]) -> list[dict]:
    """The main `[source]` and each `[[cameras]]` source: type, uri and whether it is there."""
    if cfg is None:
        return []
    out = []
    for key, src in [("source", cfg.source)] + [(f"cameras.{i}.source", c.source) for i, c in enumerate(cfg.cameras)]:
        why = _source_problem(src, key)
        out.append({"key": key, "type": src.type, "uri": src.uri, "ok": why is None} | ({"reason": why} if why else {}))
        if why:
            problems.append(why)
    return out


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (made on demand: its nearest existing parent counts), or None."""
    p = folder
    while not p.exists() and p != p.parent:
        p = p.parent
    if not p.is_dir():
        return f"{p} is not a folder"
    if not os.access(p, os.W_OK | os.X_OK):
        return f"{p} is not writable (read-only disk or permissions)"
    return None


def _outbox_state(path: Path) -> tuple[str, str] | None:
    """("problem" | "warning", why) for an outbox file `edge run` cannot use as it is, or None (none yet: it is made
    at start). Read without locks or side files (SQLite's immutable mode), so a running device is not disturbed."""
    from sync.outbox import _CORRUPT  # the SQLite errors for which the outbox moves its file aside at open

    if not path.exists():
        return None
    if not path.is_file():
        return "problem", f"{path} is not a file"
    try:
        _read_schema(path)
    except sqlite3.DatabaseError as e:
        if (getattr(e, "sqlite_errorcode", 0) & 0xFF) in _CORRUPT:
            if _in_use(path):  # a running device opened it (so it was not corrupt at its start) and may be writing
                return None   # it now: without locks, a checkpoint in progress can read as damage
            try:
                time.sleep(0.2)
                _read_schema(path)  # once more: a write that was in progress has ended
                return None
            except sqlite3.DatabaseError:
                pass
            return "warning", (f"{path} is corrupt ({e}): edge run will move it aside and start a new, empty outbox; "
                               f"the events waiting in it are not sent (fix: recover them first with `sqlite3 {path} "
                               ".recover`)")
        return "problem", f"{path} cannot be read ({e})"
    return None


def _read_schema(path: Path) -> None:
    """Read an SQLite file's schema without locks or side files (immutable mode); sqlite3.DatabaseError if it cannot."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro&immutable=1", uri=True, timeout=1)
    try:
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        db.close()


def _in_use(outbox: Path) -> bool:
    """Whether an `edge run` holds this outbox's run lock (edge.app.data_cli.lock_path)."""
    from edge.app.data_cli import RunLock

    lock = RunLock(outbox.with_name(outbox.name + ".lock"))
    if not lock.path.is_file():  # no `edge run` made it: nobody holds it (and the doctor makes no file)
        return False
    try:
        if lock.acquire():
            lock.release()
            return False
    except OSError:
        return False
    return True


def check_storage(cfg, problems: list[str], warnings: list[str]) -> dict:
    """Whether the outbox's folder (edge run cannot start without it) and the decision log's folder (the device
    runs without the log) can be written, and whether an existing outbox file can be opened."""
    if cfg is None:
        return {}
    from edge.app.operations import decision_log_dir

    outbox = cfg.sync.resolved_outbox_path(cfg.device.id)
    out = {"outbox": {"path": str(outbox), "problem": _unwritable(outbox.parent)}}
    if out["outbox"]["problem"]:
        problems.append(f"outbox {outbox}: {out['outbox']['problem']} (fix: make it writable, or set [sync] "
                        "outbox_path to a writable place)")
    elif state := _outbox_state(outbox):
        out["outbox"]["problem"] = state[1]
        if state[0] == "warning":
            warnings.append(f"outbox {state[1]}")
        else:
            problems.append(f"outbox {state[1]} (fix: move it away, or set [sync] outbox_path to another file)")
    if cfg.decisions.enabled:
        folder = decision_log_dir(cfg)
        out["decision_log"] = {"path": str(folder), "problem": _unwritable(folder)}
        if out["decision_log"]["problem"]:
            warnings.append(f"decision log {folder}: {out['decision_log']['problem']}: edge run runs without it "
                            "(fix: make it writable, or set [decisions] path)")
    return out


def _verify(a) -> str:
    from edge.core.files import sha256_file

    p = Path(a.path)
    if not p.is_file():
        return "MISSING"
    if a.size_bytes and p.stat().st_size != a.size_bytes:
        return f"CORRUPT (size {p.stat().st_size} != {a.size_bytes})"
    if a.sha256 and sha256_file(p) != a.sha256:
        return "CORRUPT (sha256 mismatch)"
    return "verified"


def _signature(zoo, name: str) -> str:
    """'ok', 'not built', 'no public key', or why the signed built.json does not verify."""
    from models.sign import SignatureError
    from models.zoo import ModelNotBuilt

    if not zoo.artifacts(name):
        return zoo.damaged(name) or "not built"  # a damaged built.json lists nothing either: say so
    if not zoo.public_key_path().is_file():
        return "no public key"
    try:
        zoo.verify(name)
        return "ok"
    except (SignatureError, ModelNotBuilt) as e:
        return str(e)


def _required_refs(cfg) -> list[tuple[object, bool]]:
    """(ModelRef, required) for the models the device may load: without a config every model of a default
    device, none required but pose; with one, hand models only with gestures, the person detector when set
    (required where analytics or [[cameras]] use it, as edge run opens it then)."""
    from edge.app.config import ModelsSection, has_analytics

    m = cfg.models if cfg is not None else ModelsSection()
    pose = cfg is None or cfg.pose.enabled
    out = [(m.pose_detector, pose), (m.pose_landmarks, pose), (m.face_detector, False)]
    if cfg is None:
        return out + [(m.hand_detector, False), (m.hand_landmarks, False)]
    if cfg.tryon.enabled and cfg.tryon.gestures.enabled:
        out += [(m.hand_detector, cfg.tryon.gestures.hands.palm_detection != "off"), (m.hand_landmarks, True)]
    if m.person_detector is not None:
        out.append((m.person_detector, bool(cfg.cameras) or has_analytics(cfg.analytics)))
    return out


def unsuited_uses(cfg, zoo=None) -> list[str]:
    """Warnings for configured models that their manifest's [[unsuited]] says serve a configured feature badly
    (e.g. the student's coarse wrists under [analytics.shelves]); unknown models are check_models' business."""
    if cfg is None:
        return []
    if zoo is None:
        from models.zoo import ModelZoo

        try:
            zoo = ModelZoo(cfg.models.cache_dir or None)
        except Exception as e:  # noqa: BLE001 - an unusable zoo is reported by check_models and by loading models
            log.debug("unsuited models not checked: %s", e)
            return []
    out = []
    for ref, required in _required_refs(cfg):
        try:
            entries = zoo.manifest(ref.name).get("unsuited", []) if required else []
        except KeyError:
            continue
        for u in entries:
            value = cfg
            for part in u["config"].split("."):
                value = getattr(value, part, None)
            if value:
                out.append(f"model {ref.name} is not suited to [{u['config']}]: {u['reason']}")
    return out


def check_models(cfg, usable: list[str], problems: list[str], warnings: list[str]) -> dict:
    """Built artefacts (sha256-verified) and, per configured model, whether a usable backend has one."""
    try:
        from models.zoo import ModelZoo
    except ImportError as e:
        problems.append(f"model zoo unavailable: {e}")
        return {"artifacts": [], "required": []}
    try:
        zoo = ModelZoo(cache_dir=(cfg.models.cache_dir or None) if cfg is not None else None)
    except Exception as e:  # noqa: BLE001 - a bad committed manifest
        problems.append(f"model zoo unusable: {e}")
        return {"artifacts": [], "required": []}
    arts, signed = [], {}
    ok = set()
    for name in zoo.names():
        signed[name] = _signature(zoo, name)
        for a in zoo.artifacts(name):
            st = "verified" if signed[name] == "ok" else _verify(a)  # zoo.verify hashed every file already
            arts.append({"name": a.name, "version": a.version, "backend": a.backend, "precision": a.precision,
                         "path": str(a.path), "size_bytes": a.size_bytes, "status": st})
            if st == "verified" and signed[name] in ("ok", "no public key"):
                ok.add((a.name, a.backend, a.precision))
            elif st != "verified":
                problems.append(f"model file {a.path} is {st}: rebuild with `edge models build`")
        if signed[name] not in ("ok", "no public key", "not built"):
            damaged = signed[name].startswith(f"model {name!r}: ")  # ModelCorrupt: names the file and the fix
            problems.append(signed[name] if damaged else f"model {name}: signature check failed: {signed[name]}")
        elif signed[name] == "no public key":
            warnings.append(f"model {name}: no public key to check the build signature (hashes checked)")
    from edge.backends.auto import _precision

    req = []
    for ref, required in _required_refs(cfg):
        backends = usable if ref.backend == "auto" else [b for b in (ref.backend,) if b in usable]
        found = []
        for b in backends:
            try:
                prec = _precision(zoo, ref.name, b, ref.precision)  # what `edge run` loads (bf16 default too)
            except Exception:  # noqa: BLE001 - unknown model / no manifest entry
                continue
            if (ref.name, b, prec) in ok:
                found.append(f"{b}/{prec}")
        status = f"ok ({', '.join(found)})" if found else "NOT BUILT"
        req.append({"name": ref.name, "backend": ref.backend, "precision": ref.precision, "status": status,
                    "required": required})
        if not found:
            msg = (f"model {ref.name} has no verified artefact for backend {ref.backend} "
                   f"({', '.join(backends) or 'no usable backend'}): run `edge models build`")
            (problems if required else warnings).append(msg)
    return {"cache_dir": str(zoo.cache), "signatures": signed, "artifacts": arts, "required": req,
            "auto_choices": _auto_choices(zoo, {ref.name for ref, _ in _required_refs(cfg)})}


def _auto_choices(zoo, models: set[str] | None = None) -> list[dict]:
    """The backend choices `auto` has cached on this device (edge.backends.auto): the newest per (model, threads),
    of `models` only when given (the config's)."""
    from edge.backends.auto import _read_cache, default_cache_path

    data = _read_cache(default_cache_path(zoo))  # {} when unreadable or not an object (`auto` rewrites it)
    newest: dict[tuple, dict] = {}
    for e in data.values():
        if not isinstance(e, dict) or (models is not None and e.get("model") not in models):
            continue
        key = (e.get("model"), e.get("threads"))
        at = e.get("chosen_at") if isinstance(e.get("chosen_at"), (int, float)) else 0
        if key not in newest or at >= newest[key][0]:
            newest[key] = (at, e)
    return [{k: e.get(k) for k in ("model", "backend", "precision", "threads", "median_ms")}
            for _, e in newest.values()]


def run(args) -> int:
    cfg = None
    problems: list[str] = []
    warnings: list[str] = []
    if args.config:
        from edge.app.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except ConfigError as e:
            problems.append(str(e))
    report = {"backends": check_backends()}
    usable = [b for b, r in report["backends"].items() if r["usable"]]
    for b, r in report["backends"].items():
        if not r["usable"]:
            warnings.append(f"backend {b} unusable: {r['reason']}")
    if not usable:
        problems.append("no inference backend is usable (install onnxruntime, openvino or ai-edge-litert)")
    report["egl"] = check_egl(args.egl_timeout)
    if not report["egl"]["ok"]:
        (problems if cfg is not None and cfg.tryon.enabled else warnings).append(
            f"EGL: {report['egl']['reason']}" + (" (try-on needs it)" if cfg is not None and cfg.tryon.enabled else ""))
    report["models"] = check_models(cfg, usable, problems, warnings)
    warnings += unsuited_uses(cfg)
    if cfg is not None:
        from edge.app.config import blind_analytics

        warnings += [w for w in (blind_analytics(cfg),) if w]
    report["sources"] = check_sources(cfg, problems)
    report["storage"] = check_storage(cfg, problems, warnings)
    report["broker"] = check_broker(cfg, args.broker_timeout)
    problems += sync_file_problems(cfg)
    if report["broker"].get("reachable") is False:
        warnings.append(f"broker {report['broker']['broker']} unreachable: {report['broker']['note']}")
    cpuinfo = None
    if args.cpuinfo:
        try:
            cpuinfo = Path(args.cpuinfo).read_text()
        except OSError as e:
            problems.append(f"--cpuinfo {args.cpuinfo}: {e.strerror} (fix: pass a copy of a device's /proc/cpuinfo)")
    report["cpu"] = check_cpu(cpuinfo)
    report["precisions"] = check_precisions(cfg, usable, report["cpu"])
    report["ok"] = not problems
    report["problems"], report["warnings"] = problems, warnings
    if args.json != "-":
        _print(report)
    if args.json:
        text = json.dumps(report, indent=2, default=str)
        if args.json == "-":
            print(text)
        else:
            try:
                Path(args.json).write_text(text)
            except OSError as e:
                log.error("--json %s: cannot write the report: %s (fix: pass a writable path, or '-' for stdout)",
                          args.json, e.strerror)
                return 1
    return 0 if report["ok"] else 1


def _print(r: dict) -> None:
    w = sys.stdout.write
    w("backends:\n")
    for b, x in r["backends"].items():
        w(f"  {b:12s} {'ok  ' + x['version'] if x['usable'] else 'NO  ' + x['reason']}\n")
    e = r["egl"]
    w(f"EGL:         {'ok  ' + e['renderer'] + ' / ' + e['version'] if e['ok'] else 'NO  ' + e['reason']}\n")
    m = r["models"]
    w(f"model cache: {m.get('cache_dir', '?')}\n")
    for name, sig in m.get("signatures", {}).items():
        w(f"  {name:28s} signature: {sig}\n")
    for a in m.get("artifacts", []):
        w(f"  {a['name']:28s} {a['backend']:12s} {a['precision']:9s} {a['status']}\n")
    for need in m.get("required", []):
        w(f"  {'needs' if need['required'] else 'may use'} {need['name']} ({need['backend']}/{need['precision']}): "
          f"{need['status']}\n")
    for c in m.get("auto_choices", []):
        w(f"  auto chose {c['backend']}/{c['precision']} for {c['model']} ({c['threads']} threads; "
          f"median ms {c['median_ms']})\n")
    for x in r.get("sources", []):
        uri = f" {x['uri']}" if x['uri'] else ""
        w(f"source:      {x['key']} {x['type']}{uri}: {'ok' if x['ok'] else 'NOT FOUND'}\n")
    for what, x in r.get("storage", {}).items():
        w(f"storage:     {what} {x['path']}: {x['problem'] or 'writable'}\n")
    b = r["broker"]
    line = " ".join(x for x in (b.get("broker", "") + (" reachable" if b.get("reachable") else ""), b.get("note", ""))
                    if x)
    w(f"broker:      {line}\n")
    c = r["cpu"]
    flags = " ".join(f for f, v in c.get("flags", {}).items() if v) or "none"
    cores = f" ({c['cores']} cores)" if c.get("cores") else ""
    w(f"cpu:         {c.get('model', '')}{cores} flags: {flags}; class: {c.get('class_name')}; "
      f"{c.get('int8_note', '')}\n")
    if "bf16" in c:
        w(f"             bf16: {c['bf16']['why']}\n")
    w("precision:   per model and backend on this device (auto: picks the fastest that passes golden parity)\n")
    for x in r.get("precisions", []):
        if "error" in x:
            w(f"  {x['error']}\n")
            continue
        prec = x["precision"] or ("not used" if x["backend"] == "*" else "-")
        backend = f"auto:{x['backend']}" if x.get("auto") else x["backend"]
        built = "" if x.get("built", True) else " (NOT BUILT: run `edge models build`)"
        w(f"  {x['name']:28s} {backend:17s} {prec:9s} {x['why']}{built}\n")
    for x in r["warnings"]:
        w(f"warning: {x}\n")
    for x in r["problems"]:
        w(f"PROBLEM: {x}\n")
    w("healthy: ready to run\n" if r["ok"] else "NOT READY (see problems above)\n")
