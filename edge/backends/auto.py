"""Open a configured model (ModelRef) from the zoo, resolving `backend="auto"` and `precision="default"`.

auto: every installed backend with a built artefact is loaded, checked against the model's golden outputs within
the tolerance of the model's manifest (edge.backends.parity.tolerance_for), and the passing ones are timed
interleaved on the golden inputs; the fastest wins. The choice is cached in JSON (default
`<cache>/backend_choice.json`) under a key made of the candidate artefacts' sha256, the runtime versions, the CPU
model, the thread count, max_batch, the tolerances and the plug-in options, so the next start with the same files on
the same device reuses it without benchmarking.

Every artefact is checked before a runtime reads it (_verified: zoo.check_artifact, i.e. the signature of built.json
and the sha256 of the file itself), explicit backend or auto, so the sha256 in the cache key is that of the file; after
the load, that the file is still the one checked (zoo.check_unchanged) and that the session's tensors are those of the
model's manifest (check_io).
"""
from __future__ import annotations

import hashlib
import json
import logging
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge.backends import parity
from edge.backends.base import BackendError, ModelLoadError, Session
from edge.backends.registry import BACKENDS, available_backends, get_backend
from edge.core.files import write_atomic
from models.zoo import FIX_HINT, ModelCorrupt

log = logging.getLogger(__name__)

CACHE_FILE = "backend_choice.json"


class NoBackendPassed(BackendError):
    """auto found no backend that loads and matches the golden outputs; .reasons maps backend -> why."""

    def __init__(self, model: str, reasons: dict[str, str]):
        self.reasons = reasons
        lines = "; ".join(f"{b}: {r}" for b, r in reasons.items())
        super().__init__(f"auto: no backend passed for model {model!r} ({lines})")


@dataclass
class Candidate:
    backend: str
    precision: str
    artifact: Any = None
    seen: dict | None = None  # zoo.check_artifact's file identities, for zoo.check_unchanged after the load
    session: Session | None = None
    errors: dict = field(default_factory=dict)
    times_ms: list[float] = field(default_factory=list)


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU as the choice cache key and the reports name it, from /proc/cpuinfo (or the text `cpuinfo`): x86's
    `model name`; ARM kernels have none (64-bit) or a generic one (`ARMv7 Processor rev 3`), so the board (`Model`,
    else `Hardware`) and the core types (`CPU part`, two on big.LITTLE) are added; else the machine type."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, list[str]] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip():
            fields.setdefault(key.strip(), []).append(value.strip())
    parts = sorted(set(fields.get("CPU part", [])))
    bits = [(fields.get("model name") or [""])[0], (fields.get("Model") or fields.get("Hardware") or [""])[0],
            f"CPU part {'/'.join(parts)}" if parts else ""]
    return ", ".join(b for b in bits if b) or platform.processor() or platform.machine()


# CPU classes for INT8 (edge doctor, `edge bench pose`): what the integer dot products run on.
CPU_CLASSES = {"amx": "AMX (Intel AMX-INT8 tiles, with AVX-512 VNNI)", "avx512_vnni": "AVX-512 VNNI",
               "avx_vnni": "AVX-VNNI", "avx2": "AVX2 only (no VNNI)", "x86_old": "x86 without AVX2",
               "arm_dotprod": "ARM dot-product (asimddp)", "arm": "ARM without dot-product", "unknown": "unknown"}
INT8_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16",
                  "asimd", "asimddp", "i8mm")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """Feature flags of the first CPU in /proc/cpuinfo (x86 `flags`, ARM `Features`); empty when unreadable."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_class(flags: set[str]) -> str:
    """A key of CPU_CLASSES: the best INT8 dot-product instructions the flags (cpu_flags) show."""
    if "asimd" in flags or "neon" in flags:
        return "arm_dotprod" if "asimddp" in flags else "arm"
    for flag, cls in (("amx_int8", "amx"), ("avx512_vnni", "avx512_vnni"), ("avx_vnni", "avx_vnni"), ("avx2", "avx2")):
        if flag in flags:
            return cls
    return "x86_old" if flags else "unknown"


def int8_qat_supported(cls: str) -> tuple[bool, str]:
    """Whether quantization-aware-trained INT8 artefacts (int8_qat) run correctly on a CPU class, and why.
    They are made without NNCF's overflow fix (full 8-bit weights), whose u8 x s8 products saturate in the 16-bit
    accumulations of AVX2 / SSE kernels; VNNI, AMX and ARM dot-product instructions accumulate in 32 bits."""
    if cls in ("amx", "avx512_vnni", "avx_vnni", "arm_dotprod", "arm"):
        return True, f"{CPU_CLASSES[cls]}: 32-bit INT8 accumulation, QAT INT8 runs as trained"
    return False, (f"{CPU_CLASSES[cls]}: QAT INT8 is not used (made without NNCF's overflow fix, its u8 x s8 "
                   "products saturate in the 16-bit accumulation of AVX2/SSE kernels; it needs VNNI, AMX or ARM)")


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags of native bf16 dot products (OpenVINO's bf16 CPU kernels)


def bf16_supported(flags: set[str]) -> tuple[bool, str]:
    """Whether OpenVINO `bf16` artefacts run in bf16 on a CPU with these flags (cpu_flags), and why. Elsewhere
    OpenVINO would silently run them in f32 (no gain), so the device's default precision is used instead."""
    have = [f for f in BF16_FLAGS if f in flags]
    if have:
        return True, f"native bf16 ({', '.join(have)}): bf16 artefacts run in bf16, their marked layers in f32"
    return False, ("no native bf16 (AVX512-BF16 or AMX-BF16): a bf16 artefact would run in f32, with no gain; "
                   "the default precision is used")


def bf16_default(manifest: dict) -> bool:
    """Whether a model's manifest makes its OpenVINO bf16 artefact the default on CPUs with native bf16."""
    return bool(manifest.get("bf16", {}).get("default_on_bf16_cpus")) and any(
        a["backend"] == "openvino" and a["precision"] == "bf16" for a in manifest["artifacts"])


def runs_as_built(backend: str, precision: str, cpu: str | None = None,
                  flags: set[str] | None = None) -> tuple[bool, str]:
    """Whether an artefact of this backend/precision runs as built on a CPU (class `cpu`, flags `flags`; default:
    this machine's), and why not: QAT INT8 off TFLite needs int8_qat_supported, bf16 needs bf16_supported."""
    if precision.endswith("_qat") and backend != "tflite":
        return int8_qat_supported(cpu or cpu_class(cpu_flags() if flags is None else flags))
    if precision == "bf16":
        return bf16_supported(cpu_flags() if flags is None else flags)
    return True, ""


def default_cache_path(zoo) -> Path:
    from edge.core.paths import cache_dir

    root = getattr(zoo, "cache", None) or cache_dir()
    return Path(root) / CACHE_FILE


def _precision(zoo, name: str, backend: str, requested: str, cpu: str | None = None,
               flags: set[str] | None = None) -> str:
    """The precision to load: the card's default for "default" (bf16 on a CPU with native bf16 where the manifest's
    [bf16] says so: bf16_default); a trained precision (int8_qat) that this cache
    does not hold falls back to the default with a warning (trained files are optional: models/trained/), and so
    does int8_qat on a CPU class (cpu, default: this machine's) that cannot run it (int8_qat_supported; TFLite's
    INT8 kernels do not saturate on AVX2, so its QAT file runs everywhere), and bf16 on a CPU without native bf16
    (flags, default: this machine's; bf16_supported)."""
    if requested == "default":
        if backend == "openvino" and bf16_default(zoo.manifest(name)) and \
                bf16_supported(cpu_flags() if flags is None else flags)[0]:
            return "bf16"
        return zoo.default_precision(name, backend)
    ok, why = runs_as_built(backend, requested, cpu, flags)
    if not ok:
        fallback = zoo.default_precision(name, backend)
        log.warning("%s: %s/%s not used on this CPU (%s); using %s", name, backend, requested, why, fallback)
        return fallback
    if requested.endswith("_qat") and not any(a.backend == backend and a.precision == requested
                                               for a in zoo.artifacts(name)):
        fallback = zoo.default_precision(name, backend)
        log.warning("%s: no %s/%s artefact in %s (the trained files were missing or did not verify at build "
                    "time: see `edge models build` output); using %s", name, backend, requested, zoo.cache, fallback)
        return fallback
    return requested


def open_model(zoo, ref, *, cache_path: Path | None = None, options: dict[str, Any] | None = None,
               tolerance: parity.Tolerance | None = None, rounds: int = 10, per_round: int = 3,
               outputs: list[str] | None = None, max_batch: int = 1) -> Session:
    """A session for `ref` (edge.app.config.ModelRef). options: backend name -> that plug-in's options (a dict or
    the plug-in's options model; ModelRef.backend_options() gives those of the device config).

    Explicit backend: loads the zoo artefact (ModelNotBuilt names `edge models build`). auto: see module doc.
    tolerance overrides the manifest's parity tolerance of auto (tests force it to 0 to see a rejection).
    outputs: only these outputs are computed/returned (see Backend.load); auto checks and times just them.
    max_batch: ask for a session that takes batches (Backend.load); auto checks the golden samples in the batch
    sizes the session takes (parity.run_batched) and times batch 1.
    """
    options = options or {}
    if ref.backend != "auto":
        precision = _precision(zoo, ref.name, ref.backend, ref.precision)
        art, seen = _verified(zoo, ref.name, ref.backend, precision)
        return _load(zoo, art, seen, ref, options, outputs, max_batch)
    return _auto(zoo, ref, Path(cache_path) if cache_path else default_cache_path(zoo), options, tolerance,
                 rounds, per_round, outputs, max_batch)


def _verified(zoo, name: str, backend: str, precision: str):
    """(the zoo's artefact, its files' identities), checked before any runtime reads it (zoo.check_artifact: signed
    built.json, the file's own sha256); ModelNotBuilt, or models.zoo.ModelCorrupt naming the model, the file and the
    fix."""
    art = zoo.artifact(name, backend, precision)
    return art, zoo.check_artifact(art)


def _load(zoo, art, seen: dict | None, ref, options: dict, outputs, max_batch: int) -> Session:
    """A session on a _verified artefact. ModelCorrupt when its files changed after they were checked (seen: their
    identities; zoo.check_unchanged), ModelLoadError when its tensors are not the manifest's (check_io)."""
    s = get_backend(art.backend, options.get(art.backend)).load(
        Path(art.path), threads=ref.threads, precision=art.precision, outputs=outputs, max_batch=max_batch)
    try:
        if seen:
            zoo.check_unchanged(art, seen)
        check_io(s, zoo.manifest(art.name), art, outputs)
    except Exception:
        s.close()
        raise
    return s


def check_io(s: Session, manifest: dict, art, outputs: list[str] | None = None) -> None:
    """ModelLoadError naming the file, the tensors and the fix unless the session has exactly the inputs of the model
    manifest's [[inputs]] and every [[outputs]] entry asked for (outputs; None: all), with the manifest's shapes (a
    dynamic session dimension, -1, matches any): the pipelines are written for those tensors."""
    bad = []
    want_out = [o for o in manifest["outputs"] if outputs is None or o["name"] in outputs]
    for kind, specs, want in (("input", s.inputs, manifest["inputs"]), ("output", s.outputs, want_out)):
        got = {t.name: tuple(t.shape) for t in specs}
        for t in want:
            shape = tuple(t["shape"])
            g = got.pop(t["name"], None)
            if g is None:
                bad.append(f"no {kind} {t['name']!r}")
            elif len(g) != len(shape) or any(d not in (-1, e) for d, e in zip(g, shape)):
                bad.append(f"{kind} {t['name']!r} has shape {g}, the manifest says {shape}")
        if kind == "input" and got:
            bad.append(f"input(s) {sorted(got)} not in the manifest")
    if bad:
        raise ModelLoadError(f"{art.backend}: {art.path}: not the model that the [[inputs]] / [[outputs]] of the "
                             f"manifest of model {art.name!r} describe ({'; '.join(bad)}); {FIX_HINT}")


def _candidates(zoo, ref, reasons: dict[str, str]) -> list[Candidate]:
    out = []
    for b, (ok, why) in available_backends().items():
        if not ok:
            reasons[b] = f"not installed/usable: {why}"
            log.info("auto %s: skipping %s: %s", ref.name, b, why)
            continue
        try:
            prec = _precision(zoo, ref.name, b, ref.precision)
            art, seen = _verified(zoo, ref.name, b, prec)
            out.append(Candidate(b, prec, art, seen))
        except ModelCorrupt as e:
            reasons[b] = f"damaged artefact: {e}"
            log.warning("auto %s: skipping %s: %s", ref.name, b, e)
        except Exception as e:  # noqa: BLE001 - ModelNotBuilt, unknown precision, bad manifest
            reasons[b] = f"no artefact: {e}"
            log.info("auto %s: skipping %s: %s", ref.name, b, e)
    return out


def _options_tag(options: dict) -> dict:
    """Plug-in options as plain data (dicts or options models), for the cache key."""
    return {b: o.model_dump() if hasattr(o, "model_dump") else o for b, o in options.items() if o is not None}


def _cache_key(ref, cands: list[Candidate], tol_tag: str, outputs: list[str] | None = None,
               options: dict | None = None, max_batch: int = 1) -> str:
    """Key of a choice: the candidates' sha256 (of their files: see _verified), runtimes, CPU, settings."""
    versions = {b: v for b, (ok, v) in available_backends().items() if ok}
    parts = {"model": ref.name, "precision": ref.precision, "threads": ref.threads, "cpu": cpu_model(),
             "runtimes": versions, "tolerance": tol_tag, "max_batch": max_batch,
             "artifacts": sorted((c.backend, c.precision, c.artifact.sha256) for c in cands)}
    if outputs is not None:
        parts["outputs"] = sorted(outputs)
    if options:
        parts["options"] = _options_tag(options)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _read_cache(path: Path) -> dict:
    """The choice cache (key -> entry); {} with a warning when it is unreadable or not a JSON object (the next
    choice rewrites it)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("auto: ignoring unreadable choice cache %s: %s", path, e)
        return {}
    if not isinstance(data, dict):
        log.warning("auto: ignoring choice cache %s: a JSON %s, not an object (the next choice rewrites it)", path,
                    type(data).__name__)
        return {}
    return data


def _cached_choice(path: Path, key: str, model: str) -> dict | None:
    """The cache entry of key, when it names a backend and a precision; None (a malformed one with a warning)."""
    hit = _read_cache(path).get(key)
    if hit is None or isinstance(hit, dict) and isinstance(hit.get("backend"), str) \
            and isinstance(hit.get("precision"), str):
        return hit
    log.warning("auto %s: ignoring a malformed entry of %s (no backend/precision); selecting again", model, path)
    return None


def _write_cache(path: Path, key: str, entry: dict) -> None:
    data = _read_cache(path)
    data[key] = entry
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())


def _auto(zoo, ref, cache_path: Path, options: dict, tolerance, rounds: int, per_round: int,
          outputs: list[str] | None = None, max_batch: int = 1) -> Session:
    reasons: dict[str, str] = {}
    cands = _candidates(zoo, ref, reasons)
    manifest = zoo.manifest(ref.name) if cands else {}  # a candidate has an artefact, so the model is known
    tols = {c.backend: tolerance or parity.tolerance_for(manifest, c.precision) for c in cands}
    tol_tag = json.dumps(tolerance.to_dict(), sort_keys=True) if tolerance else \
        json.dumps({b: t.to_dict() for b, t in tols.items()}, sort_keys=True)
    key = _cache_key(ref, cands, tol_tag, outputs, options, max_batch)
    hit = _cached_choice(cache_path, key, ref.name)
    if hit:
        c = next((c for c in cands if c.backend == hit["backend"] and c.precision == hit["precision"]), None)
        if c is not None:
            try:
                s = _load(zoo, c.artifact, c.seen, ref, options, outputs, max_batch)
                log.info("auto %s: %s/%s (cached choice from %s)", ref.name, c.backend, c.precision, cache_path)
                return s
            except (BackendError, ModelCorrupt) as e:
                log.warning("auto %s: cached choice %s no longer loads (%s); re-selecting", ref.name, c.backend, e)

    inputs, golden = zoo.golden(ref.name)
    if outputs is not None:
        golden = {k: v for k, v in golden.items() if k in set(outputs)}
    passing = []
    for c in cands:
        tol = tols[c.backend]
        try:
            c.session = _load(zoo, c.artifact, c.seen, ref, options, outputs, max_batch)
            ok, c.errors, why = parity.check(c.session, inputs, golden, tol)
        except (BackendError, ModelCorrupt) as e:
            reasons[c.backend] = f"damaged artefact: {e}" if isinstance(e, ModelCorrupt) else str(e)
            log.warning("auto %s: %s/%s rejected: %s", ref.name, c.backend, c.precision, e)
            if c.session is not None:
                c.session.close()
                c.session = None
            continue
        if not ok:
            reasons[c.backend] = f"{c.precision} fails golden parity ({why})"
            log.warning("auto %s: %s/%s rejected: fails golden parity: %s", ref.name, c.backend, c.precision, why)
            c.session.close()
            c.session = None
            continue
        passing.append(c)
    if not passing:
        raise NoBackendPassed(ref.name, reasons or {b: "not tried" for b in BACKENDS})

    _time_interleaved(passing, inputs, rounds, per_round)
    for c in passing:
        reasons[c.backend] = f"passed, median {statistics.median(c.times_ms):.2f} ms"
    best = min(passing, key=lambda c: statistics.median(c.times_ms))
    for c in passing:
        if c is not best:
            c.session.close()
    entry = {"backend": best.backend, "precision": best.precision, "model": ref.name, "threads": ref.threads,
             "max_batch": max_batch, "sha256": best.artifact.sha256, "cpu": cpu_model(), "chosen_at": time.time(),
             "median_ms": {c.backend: round(statistics.median(c.times_ms), 3) for c in passing},
             "parity": {c.backend: c.errors for c in passing}, "reasons": reasons}
    try:
        _write_cache(cache_path, key, entry)
    except OSError as e:
        log.warning("auto: cannot write choice cache %s: %s", cache_path, e)
    log.info("auto %s: chose %s/%s (%s)", ref.name, best.backend, best.precision,
             ", ".join(f"{b} {ms} ms" for b, ms in entry["median_ms"].items()))
    return best.session


def _time_interleaved(cands: list[Candidate], inputs: dict, rounds: int, per_round: int) -> None:
    """Warm up, then time rounds that alternate the candidates so load noise hits all of them alike."""
    feed = {k: v[:1] for k, v in inputs.items()}
    for c in cands:  # first runs include lazy initialisation (OpenVINO, XNNPACK): keep them out of the timing
        for _ in range(5):
            c.session.run(feed)
    for _ in range(rounds):
        for c in cands:
            for _ in range(per_round):
                t = time.perf_counter()
                c.session.run(feed)
                c.times_ms.append((time.perf_counter() - t) * 1e3)
