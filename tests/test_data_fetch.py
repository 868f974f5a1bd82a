"""`bench data fetch selfie2anime` and the resumable downloader, offline: every input is built here, small.

Selfie-like images are toyfaces photos saved as JPEG, anime-like ones toyfaces anime faces saved as PNG (3 train
and 2 test per domain, 32x32); the manifest's split counts are overridden to match, never edited.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import http.server
import io
import json
import socket
import stat
import sys
import threading
import zipfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bench.data import fetch
from bench.data.fetch import MARKER, add_fetch_arguments, fetch_selfie2anime, load_manifest, run_fetch, tree_sha256
from bench.data.toyfaces import render_face, sample_factors
from bench.download import ChecksumMismatch, DownloadUnavailable, download
from bench.errors import BenchError, DataError

N_TRAIN, N_TEST, SIZE = 3, 2, 32
SMALL_COUNTS = {"trainA": N_TRAIN, "trainB": N_TRAIN, "testA": N_TEST, "testB": N_TEST}
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])


# -- inputs ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def faces() -> dict[str, list[bytes]]:
    """5 selfie-like JPEGs ("A") and 5 anime-like PNGs ("B"): the first 3 for train, the last 2 for test."""
    rng = np.random.default_rng(0)
    out: dict[str, list[bytes]] = {"A": [], "B": []}
    for i in range(N_TRAIN + N_TEST):
        factors = sample_factors(rng)
        for domain, fmt in (("A", "JPEG"), ("B", "PNG")):
            buffer = io.BytesIO()
            render_face(factors, domain, SIZE, noise_seed=i).save(buffer, fmt)
            out[domain].append(buffer.getvalue())
    return out


def split_of(faces: dict[str, list[bytes]], split: str, domain: str) -> list[bytes]:
    """The images of one split and domain."""
    return faces[domain][:N_TRAIN] if split == "train" else faces[domain][N_TRAIN:]


@pytest.fixture
def manifest() -> dict:
    """The shipped manifest with the small counts and no archive hashes (the test zips are not the real ones)."""
    small = copy.deepcopy(load_manifest())
    small["splits"] = dict(SMALL_COUNTS)
    for spec in small["sources"].values():
        if isinstance(spec.get("sha256"), str):
            spec["sha256"] = None
    return small


@pytest.fixture
def cli_manifest(manifest: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Make the CLI read the small manifest; edits to the returned dict made before a run take effect."""
    monkeypatch.setattr(fetch, "load_manifest", lambda path=None: copy.deepcopy(manifest))
    return manifest


def cli(*argv: str) -> int:
    """`bench data fetch ARGS` as the CLI runs it: a BenchError becomes its message on stderr and exit 2."""
    parser = argparse.ArgumentParser(prog="bench data fetch")
    add_fetch_arguments(parser)
    try:
        return run_fetch(parser.parse_args(argv))
    except BenchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def ugatit_entries(faces: dict[str, list[bytes]], anime_in_a: bool = False) -> dict[str, bytes]:
    """U-GAT-IT names: selfies female_N.jpg, anime NNNN.png; `anime_in_a` puts the anime under A (Council's way)."""
    entries = {}
    for split in ("train", "test"):
        for i, blob in enumerate(split_of(faces, split, "A")):
            entries[f"{split}{'B' if anime_in_a else 'A'}/female_{i}.jpg"] = blob
        for i, blob in enumerate(split_of(faces, split, "B")):
            entries[f"{split}{'A' if anime_in_a else 'B'}/{i:04d}.png"] = blob
    return entries


def write_zip(path: Path, entries: dict[str, bytes], prefix: str = "selfie2anime/", extra=()) -> Path:
    """A stored (uncompressed) zip of `entries` under `prefix`, plus `extra` (ZipInfo, data) pairs."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        if prefix:
            zf.writestr(prefix, b"")  # the folder entry real archives have
        for name, data in entries.items():
            zf.writestr(prefix + name, data)
        zf.writestr(prefix + "trainA/Thumbs.db", b"junk")  # non-images are skipped
        for info, data in extra:
            zf.writestr(info, data)
    return path


def write_parquet(path: Path, a: list[bytes], b: list[bytes], a_paths=None, b_paths=None) -> Path:
    """A parquet file in the HF schema: imageA and imageB, each struct{bytes, path}."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def column(blobs, paths):
        return pa.array([{"bytes": x, "path": p} for x, p in zip(blobs, paths or [None] * len(blobs))], type=IMAGE)

    pq.write_table(pa.table({"imageA": column(a, a_paths), "imageB": column(b, b_paths)}), path)
    return path


def hf_folder(folder: Path, faces: dict[str, list[bytes]], swap: bool = False, names: bool = False) -> Path:
    """The two HF parquet files under folder/data/; `swap` puts the anime in imageA, `names` fills `path`."""
    for split in ("train", "test"):
        a, b = split_of(faces, split, "A"), split_of(faces, split, "B")
        a_paths = [f"female_{i}.jpg" for i in range(len(a))] if names else None
        b_paths = [f"{i:04d}.png" for i in range(len(b))] if names else None
        if swap:
            a, b, a_paths, b_paths = b, a, b_paths, a_paths
        write_parquet(folder / "data" / f"{split}-00000-of-00001.parquet", a, b, a_paths, b_paths)
    return folder


def files(folder: Path) -> dict[str, bytes]:
    """Name -> bytes of the files in one split folder."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def assert_nothing_written(root: Path) -> None:
    """No dataset folder and no temporary sibling left behind."""
    assert not root.exists()
    assert not [p.name for p in root.parent.iterdir() if p.name.startswith(f".{root.name}.")]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- sources and mapping ----------------------------------------------------------------------------------------
def test_hf_parquet_maps_columns_and_keeps_bytes(tmp_path, faces, manifest):
    source = hf_folder(tmp_path / "hf", faces)
    root = tmp_path / "selfie2anime"
    result = fetch_selfie2anime(root, "hf", source, manifest=manifest)
    assert result.status == "fetched"
    for split in ("train", "test"):
        for domain, ext in (("A", ".jpg"), ("B", ".png")):
            written = files(root / f"{split}{domain}")
            expected = split_of(faces, split, domain)
            assert written == {f"row{i:05d}{ext}": blob for i, blob in enumerate(expected)}  # bytes unchanged
    marker = json.loads((root / MARKER).read_text())
    assert marker["source"] == "hf" and marker["counts"] == SMALL_COUNTS
    assert marker["tree_sha256"] == tree_sha256(root)
    assert marker["orientation"].startswith("image statistics")  # no names: decided by pixels
    assert set(marker["parquet_sha256"]) == {"train", "test"}


def test_hf_path_names_used_when_unique(tmp_path, faces, manifest):
    root = tmp_path / "s2a"
    fetch_selfie2anime(root, "hf", hf_folder(tmp_path / "hf", faces, names=True) / "data", manifest=manifest)
    assert sorted(files(root / "trainA")) == ["female_0.jpg", "female_1.jpg", "female_2.jpg"]
    assert files(root / "testB") == {"0000.png": faces["B"][3], "0001.png": faces["B"][4]}
    assert json.loads((root / MARKER).read_text())["orientation"].startswith("file names")


def test_hf_duplicate_path_names_fall_back_to_row_numbers(tmp_path, faces, manifest):
    folder = tmp_path / "hf"
    for split in ("train", "test"):
        a, b = split_of(faces, split, "A"), split_of(faces, split, "B")
        write_parquet(folder / f"{split}-00000-of-00001.parquet", a, b, ["x/same.jpg"] * len(a), None)
    root = tmp_path / "s2a"
    # --from may name one of the two files: the other is found beside it.
    fetch_selfie2anime(root, "hf", folder / "test-00000-of-00001.parquet", manifest=manifest)
    assert sorted(files(root / "trainA")) == ["row00000.jpg", "row00001.jpg", "row00002.jpg"]


def test_ugatit_zip(tmp_path, faces, manifest):
    archive = write_zip(tmp_path / "ugatit.zip", ugatit_entries(faces))
    root = tmp_path / "selfie2anime"
    marker = fetch_selfie2anime(root, "ugatit", archive, manifest=manifest).marker
    assert files(root / "trainA") == {f"female_{i}.jpg": b for i, b in enumerate(faces["A"][:N_TRAIN])}
    assert files(root / "testB") == {f"{i:04d}.png": b for i, b in enumerate(faces["B"][N_TRAIN:])}
    assert marker["swapped_ab"] is False and marker["archive_sha256"] == sha256(archive.read_bytes())
    assert marker["skipped_entries"] == 1  # Thumbs.db


def test_council_zip_is_swapped_back(tmp_path, faces, manifest):
    archive = write_zip(tmp_path / "council.zip", ugatit_entries(faces, anime_in_a=True))
    root = tmp_path / "selfie2anime"
    marker = fetch_selfie2anime(root, "council", archive, manifest=manifest).marker
    assert files(root / "trainA") == {f"female_{i}.jpg": b for i, b in enumerate(faces["A"][:N_TRAIN])}
    assert files(root / "testA") == {f"female_{i}.jpg": b for i, b in enumerate(faces["A"][N_TRAIN:])}
    assert files(root / "trainB") == {f"{i:04d}.png": b for i, b in enumerate(faces["B"][:N_TRAIN])}
    assert marker["swapped_ab"] is True and marker["orientation"].startswith("file names")


def test_zip_without_prefix_folder(tmp_path, faces, manifest):
    archive = write_zip(tmp_path / "flat.zip", ugatit_entries(faces), prefix="")
    root = tmp_path / "s2a"
    assert fetch_selfie2anime(root, "ugatit", archive, manifest=manifest).marker["zip_prefix"] == ""


def test_council_known_hash_is_checked_for_from_files(tmp_path, faces, manifest):
    archive = write_zip(tmp_path / "council.zip", ugatit_entries(faces, anime_in_a=True))
    manifest["sources"]["council"]["sha256"] = "0" * 64
    with pytest.raises(DataError, match="not the council archive"):
        fetch_selfie2anime(tmp_path / "s2a", "council", archive, manifest=manifest)
    assert_nothing_written(tmp_path / "s2a")
    manifest["sources"]["council"]["sha256"] = sha256(archive.read_bytes())
    marker = fetch_selfie2anime(tmp_path / "s2a", "council", archive, manifest=manifest).marker
    assert marker["verified"] == "sha256 matches the manifest"


# -- markers, reruns, leftovers -----------------------------------------------------------------------------------
def test_second_run_is_a_no_op_and_force_refetches(tmp_path, faces, cli_manifest, capsys):
    archive = write_zip(tmp_path / "ugatit.zip", ugatit_entries(faces))
    root = tmp_path / "s2a"
    args = ("selfie2anime", "--source", "ugatit", "--from", str(archive), "--data-root", str(root))
    assert cli(*args) == 0
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}
    assert cli(*args) == 0
    assert "already complete" in capsys.readouterr().out
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()} == before

    council = write_zip(tmp_path / "council.zip", ugatit_entries(faces, anime_in_a=True))
    assert cli("selfie2anime", "--source", "council", "--from", str(council), "--data-root", str(root), "--force") == 0
    assert json.loads((root / MARKER).read_text())["source"] == "council"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["council.zip", "s2a", "ugatit.zip"]


def test_existing_folder_without_marker_is_left_alone(tmp_path, faces, manifest):
    root = tmp_path / "s2a"
    (root / "trainA").mkdir(parents=True)
    (root / "trainA" / "mine.jpg").write_bytes(b"precious")
    archive = write_zip(tmp_path / "ugatit.zip", ugatit_entries(faces))
    for force in (False, True):
        with pytest.raises(DataError, match="never overwrites"):
            fetch_selfie2anime(root, "ugatit", archive, force=force, manifest=manifest)
    assert [p.relative_to(root).as_posix() for p in sorted(root.rglob("*"))] == ["trainA", "trainA/mine.jpg"]
    assert (root / "trainA" / "mine.jpg").read_bytes() == b"precious"


def test_truncated_zip_leaves_nothing(tmp_path, faces, manifest):
    good = write_zip(tmp_path / "good.zip", ugatit_entries(faces)).read_bytes()
    archive = tmp_path / "truncated.zip"
    archive.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        fetch_selfie2anime(tmp_path / "s2a", "ugatit", archive, manifest=manifest)
    assert_nothing_written(tmp_path / "s2a")


def test_corrupt_entry_fails_mid_extraction_and_leaves_nothing(tmp_path, faces, manifest):
    data = bytearray(write_zip(tmp_path / "good.zip", ugatit_entries(faces)).read_bytes())
    at = data.find(faces["B"][1][40:80])  # inside a stored entry extracted after others were written
    data[at] ^= 0xFF
    archive = tmp_path / "crc.zip"
    archive.write_bytes(bytes(data))
    with pytest.raises(DataError, match="CRC"):
        fetch_selfie2anime(tmp_path / "s2a", "ugatit", archive, manifest=manifest)
    assert_nothing_written(tmp_path / "s2a")


def test_count_mismatch_fails_unless_allowed(tmp_path, faces, manifest):
    archive = write_zip(tmp_path / "ugatit.zip", ugatit_entries(faces))
    real_counts = load_manifest()
    real_counts["sources"]["ugatit"] = manifest["sources"]["ugatit"]
    with pytest.raises(DataError, match=r"trainA 3 \(expected 3400\)"):
        fetch_selfie2anime(tmp_path / "s2a", "ugatit", archive, manifest=real_counts)
    assert_nothing_written(tmp_path / "s2a")
    result = fetch_selfie2anime(tmp_path / "s2a", "ugatit", archive, allow_count_mismatch=True, manifest=real_counts)
    assert result.marker["count_mismatch"] is True and result.marker["counts"] == SMALL_COUNTS


# -- orientation --------------------------------------------------------------------------------------------------
def test_orientation_check_fires_on_swapped_names(tmp_path, faces, manifest):
    archive = write_zip(tmp_path / "swapped.zip", ugatit_entries(faces, anime_in_a=True))
    with pytest.raises(DataError, match="swapped"):
        fetch_selfie2anime(tmp_path / "s2a", "ugatit", archive, manifest=manifest)  # ugatit is not mapped
    assert_nothing_written(tmp_path / "s2a")


def test_orientation_check_fires_on_swapped_pixels(tmp_path, faces, manifest):
    source = hf_folder(tmp_path / "hf", faces, swap=True)
    with pytest.raises(DataError, match="trainA looks like anime"):
        fetch_selfie2anime(tmp_path / "s2a", "hf", source, manifest=manifest)
    assert_nothing_written(tmp_path / "s2a")
    result = fetch_selfie2anime(tmp_path / "s2a", "hf", source, check_orientation=False, manifest=manifest)
    assert result.marker["orientation"].startswith("not checked")


# -- hostile archives ---------------------------------------------------------------------------------------------
def _symlink(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        (zipfile.ZipInfo("../evil.png"), "'..'"),
        (zipfile.ZipInfo("selfie2anime/trainA/../../evil.png"), "'..'"),
        (zipfile.ZipInfo("/tmp/evil.png"), "absolute"),
        (zipfile.ZipInfo("C:/evil.png"), "drive letter"),
        (_symlink("selfie2anime/trainA/link.jpg"), "symbolic link"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink"],
)
def test_hostile_zip_entries_are_refused(tmp_path, faces, manifest, entry, reason):
    archive = write_zip(tmp_path / "evil.zip", ugatit_entries(faces), extra=[(entry, b"/etc/passwd")])
    with pytest.raises(DataError, match=reason) as caught:
        fetch_selfie2anime(tmp_path / "s2a", "ugatit", archive, manifest=manifest)
    assert repr(entry.filename) in str(caught.value)
    assert_nothing_written(tmp_path / "s2a")
    assert not (tmp_path.parent / "evil.png").exists()


# -- offline and the hub ------------------------------------------------------------------------------------------
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("failing", ["get_paths_info", "hf_hub_download"])
def test_hf_offline_exits_2_with_instructions(tmp_path, cli_manifest, monkeypatch, capsys, failing):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def paths_info(self, repo_id, paths, **kwargs):
        if failing == "get_paths_info":
            raise ConnectionError("[Errno -2] Name or service not known")
        return [SimpleNamespace(path=p, lfs=SimpleNamespace(sha256="0" * 64)) for p in paths]

    def hub_download(*args, **kwargs):
        raise LocalEntryNotFoundError("cannot find the requested files in the local cache")

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", paths_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hub_download)
    root = tmp_path / "s2a"
    assert cli("selfie2anime", "--data-root", str(root)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1
    revision = cli_manifest["sources"]["hf"]["revision"]
    assert f"huggan/selfie2anime/resolve/{revision}/data/train-00000-of-00001.parquet" in err
    assert f"--source hf --data-root {root} --from" in err
    assert_nothing_written(root)


def test_hf_download_is_verified_against_the_hub_hash(tmp_path, faces, manifest, monkeypatch):
    import huggingface_hub

    local = hf_folder(tmp_path / "hub", faces) / "data"
    declared = {f"data/{p.name}": sha256(p.read_bytes()) for p in local.iterdir()}

    def paths_info(self, repo_id, paths, repo_type=None, revision=None):
        assert (repo_id, repo_type, revision) == (
            "huggan/selfie2anime",
            "dataset",
            manifest["sources"]["hf"]["revision"],
        )
        return [SimpleNamespace(path=p, lfs=SimpleNamespace(sha256=declared[p])) for p in paths]

    monkeypatch.setattr(huggingface_hub.HfApi, "get_paths_info", paths_info)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, name, **kw: str(local / Path(name).name))
    marker = fetch_selfie2anime(tmp_path / "s2a", "hf", manifest=manifest).marker
    assert marker["verified"] == "sha256 matches the Hub's LFS sha256"
    declared["data/test-00000-of-00001.parquet"] = "f" * 64
    with pytest.raises(DataError, match="the Hub declares"):
        fetch_selfie2anime(tmp_path / "other", "hf", manifest=manifest)
    assert_nothing_written(tmp_path / "other")


def test_council_offline_exits_2_with_instructions(tmp_path, cli_manifest, capsys):
    url = f"http://127.0.0.1:{_closed_port()}/s/selfie2anime.zip?dl=1"
    cli_manifest["sources"]["council"]["url"] = url
    root = tmp_path / "s2a"
    assert cli("selfie2anime", "--source", "council", "--data-root", str(root)) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and f"Download {url}" in err
    assert f"--source council --data-root {root} --from" in err
    assert list(tmp_path.iterdir()) == []  # no dataset, no empty .downloads/


def test_council_downloads_from_a_server(tmp_path, faces, cli_manifest, server):
    blob = write_zip(tmp_path / "council.zip", ugatit_entries(faces, anime_in_a=True)).read_bytes()
    server.files["/selfie2anime.zip"] = blob
    cli_manifest["sources"]["council"].update(url=server.url + "/selfie2anime.zip", sha256=sha256(blob))
    root = tmp_path / "data" / "s2a"
    assert cli("selfie2anime", "--source", "council", "--data-root", str(root)) == 0
    assert files(root / "trainA") == {f"female_{i}.jpg": b for i, b in enumerate(faces["A"][:N_TRAIN])}
    assert (tmp_path / "data" / ".downloads" / "s2a-council.zip").read_bytes() == blob


def test_ugatit_without_from_says_what_to_download(tmp_path, cli_manifest, capsys):
    assert cli("selfie2anime", "--source", "ugatit", "--data-root", str(tmp_path / "s2a")) == 2
    err = capsys.readouterr().err
    assert "1xOWj1UVgp6NKMT3HbPhBbtq2A4EDkghF" in err and "--source ugatit" in err and "--from" in err


def test_cli_errors(tmp_path, cli_manifest, capsys):
    assert cli("selfie2anime", "--source", "council", "--from", str(tmp_path / "nope.zip")) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as caught:
        cli("selfie2anim")
    assert caught.value.code == 2
    assert "did you mean 'selfie2anime'" in capsys.readouterr().err


# -- the downloader -----------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    """GET with optional Range support; `truncate` closes the connection after that many body bytes."""

    def do_GET(self) -> None:
        server = self.server
        data = server.files.get(self.path)
        ask = self.headers.get("Range")
        server.requests.append((self.path, ask))
        if data is None:
            self.send_error(404)
            return
        start = int(ask.removeprefix("bytes=").split("-")[0]) if ask and server.honour_range else 0
        if start >= len(data) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        self.wfile.write(body[: server.truncate] if server.truncate is not None else body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1 in a thread; tests set .files, .honour_range and .truncate."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.files, httpd.requests, httpd.honour_range, httpd.truncate = {}, [], True, None
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


PAYLOAD = bytes(np.random.default_rng(1).integers(0, 256, 300_000, dtype=np.uint8))


def test_download_verifies_and_renames(tmp_path, server):
    server.files["/f.bin"] = PAYLOAD
    dest = download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD and not (tmp_path / "f.bin.part").exists()
    # an existing verified file is not fetched again
    assert download(server.url + "/f.bin", dest, sha256_prefix=sha256(PAYLOAD)[:8], progress=False) == dest
    assert len(server.requests) == 1


def test_download_resumes_a_part_with_range(tmp_path, server):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:100_000])
    dest = download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests == [("/f.bin", "bytes=100000-")]


def test_download_resumes_after_a_dropped_connection(tmp_path, server):
    server.files["/f.bin"] = PAYLOAD
    server.truncate = 120_000
    with pytest.raises(DownloadUnavailable, match="rerunning resumes"):
        download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin.part").stat().st_size == 120_000
    server.truncate = None
    download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert (tmp_path / "f.bin").read_bytes() == PAYLOAD and server.requests[-1][1] == "bytes=120000-"


def test_download_restarts_when_range_is_ignored(tmp_path, server):
    server.files["/f.bin"] = PAYLOAD
    server.honour_range = False
    (tmp_path / "f.bin.part").write_bytes(b"x" * 5000)  # not even a prefix of the file
    dest = download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False)
    assert dest.read_bytes() == PAYLOAD


def test_download_of_a_complete_part(tmp_path, server):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD)  # the server answers 416 to bytes=len-
    assert download(server.url + "/f.bin", tmp_path / "f.bin", sha256=sha256(PAYLOAD), progress=False).exists()


def test_download_with_a_bad_hash_deletes_the_part(tmp_path, server):
    server.files["/f.bin"] = PAYLOAD
    (tmp_path / "f.bin.part").write_bytes(PAYLOAD[:1000])
    with pytest.raises(ChecksumMismatch, match="deleted"):
        download(server.url + "/f.bin", tmp_path / "f.bin", sha256_prefix="00000000", progress=False)
    assert list(tmp_path.iterdir()) == []


def test_download_unavailable_carries_the_manual_help(tmp_path, server):
    help_text = "Download it by hand and put it at /somewhere/f.bin"
    with pytest.raises(DownloadUnavailable) as caught:
        download(f"http://127.0.0.1:{_closed_port()}/f.bin", tmp_path / "f.bin", manual_help=help_text)
    assert help_text in str(caught.value) and isinstance(caught.value, BenchError)
    with pytest.raises(DownloadUnavailable, match="404"):  # an HTTP error is also "get it by hand"
        download(server.url + "/missing.bin", tmp_path / "f.bin", manual_help=help_text, progress=False)
    assert list(tmp_path.iterdir()) == []
