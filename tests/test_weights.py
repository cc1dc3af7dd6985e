"""Published weights one command away: an http(s) URL given as `pretrained` is downloaded once into
the weights cache, verified, and then loads exactly as the same file on disk does; every failure
(a wrong checksum, a download cut short, no server) is one clear error that names the URL and
leaves nothing under the final name. A real HTTP server on 127.0.0.1 serves the files; nothing
here reaches the internet. `fm weights list` covers every registered encoder and segmenter."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.server
import json
import re
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from encoders.download import (
    ChecksumMismatchError,
    DownloadError,
    cached_file,
    download_weights,
    weights_cache,
)
from encoders.published import ENCODER_WEIGHTS, UNKNOWN, published_sha256
from encoders.registry import create_encoder, list_encoders
from fm.cli.weights import weights
from fm.core.errors import InputError, InputFileError
from heads.segmenters import create_segmenter, list_segmenters

CHECKPOINT = "/published/brainid_pretrained.pth"


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes[path] = (bytes, mode); mode "ok", or "cut": announce every byte, send
    half, close the connection (what a dropped download looks like to the client)."""

    def do_GET(self):
        route = self.server.routes.get(self.path)
        self.server.requests.append(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        body, mode = route
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if mode == "ok" else body[: len(body) // 2])
        self.close_connection = True

    def log_message(self, *args):  # keep pytest's output clean
        pass


@contextlib.contextmanager
def serving(routes: dict[str, tuple[bytes, str]]):
    """A ThreadingHTTPServer on 127.0.0.1 (a free port); yields it with `base` its http://host:port."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.routes, server.requests = dict(routes), []
    server.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "fm-cache"
    monkeypatch.setenv("FM_CACHE", str(folder))
    return folder


@pytest.fixture(scope="module")
def brain_id_file(tmp_path_factory) -> Path:
    """A small Brain-ID checkpoint in the published container (see ../shared/refvectors/README.md):
    {"model", "optimizer", "epoch", "args": argparse.Namespace, "best_val_stats"}."""
    torch.manual_seed(0)
    model = create_encoder("brain_id", f_maps=8)
    path = tmp_path_factory.mktemp("published") / "brainid_pretrained.pth"
    container = {
        "model": model.state_dict(),
        "optimizer": {},
        "epoch": 7,
        "args": argparse.Namespace(f_maps=8, lr=1e-4),
        "best_val_stats": {"loss": 0.25},
    }
    torch.save(container, path)
    return path


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@torch.no_grad()
def test_a_url_loads_as_the_file_does_and_then_comes_from_the_cache_offline(brain_id_file, cache):
    data = brain_id_file.read_bytes()
    local = create_encoder("brain_id", brain_id_file, f_maps=8)
    x = torch.rand(1, 1, 20, 24, 18)
    with serving({CHECKPOINT: (data, "ok")}) as server:
        url = f"{server.base}{CHECKPOINT}#sha256={sha256_of(data)}"
        from_url = create_encoder("brain_id", url, f_maps=8)
        assert server.requests == [CHECKPOINT]
    for key, value in local.state_dict().items():
        assert torch.equal(from_url.state_dict()[key], value), key
    assert torch.equal(from_url.forward_features(x).embedding, local.forward_features(x).embedding)
    kept = cached_file(url)
    assert kept.name == "brainid_pretrained.pth" and kept.parent.parent == cache / "weights"
    assert files_in(cache) == [kept] and kept.read_bytes() == data  # no temporary file left beside it

    # The server is gone: the second load must not touch the network (it would fail to connect).
    again = create_encoder("brain_id", url, f_maps=8)
    assert torch.equal(again.forward_features(x).embedding, local.forward_features(x).embedding)
    assert create_encoder("brain_id", url.split("#")[0], f_maps=8) is not None  # same file without a fragment


def test_bytes_that_do_not_match_the_checksum_are_refused_and_not_kept(brain_id_file, cache):
    data = brain_id_file.read_bytes()
    corrupted = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
    with serving({CHECKPOINT: (corrupted, "ok")}) as server:
        plain = server.base + CHECKPOINT
        with pytest.raises(ChecksumMismatchError) as caught:
            create_encoder("brain_id", f"{plain}#sha256={sha256_of(data)}", f_maps=8)
        message = str(caught.value)
        assert plain in message and sha256_of(data) in message and sha256_of(corrupted) in message
        assert isinstance(caught.value, InputFileError) and caught.value.__cause__ is None
        assert files_in(cache) == []

        # The SHA-256 of the published table is checked the same way when the URL has no fragment.
        with pytest.raises(ChecksumMismatchError, match=sha256_of(data)):
            download_weights(plain, sha256=sha256_of(data))
        assert files_in(cache) == []


def test_the_registry_checks_the_published_tables_checksum(brain_id_file, cache, monkeypatch):
    import encoders.registry

    data = brain_id_file.read_bytes()
    wrong = "0" * 64
    with serving({CHECKPOINT: (data, "ok")}) as server:
        plain = server.base + CHECKPOINT
        monkeypatch.setattr(encoders.registry, "published_sha256", lambda url: wrong if url == plain else None)
        with pytest.raises(ChecksumMismatchError, match=f"expected {wrong}"):
            create_encoder("brain_id", plain, f_maps=8)
        assert files_in(cache) == []
    row = next(r for r in ENCODER_WEIGHTS if r.sha256 != UNKNOWN and r.download)
    assert published_sha256(row.download) == row.sha256 == published_sha256(row.download + "#anything")
    assert published_sha256("https://example.org/not-in-the-table.pth") is None


def test_a_download_cut_short_leaves_nothing_and_a_retry_succeeds(brain_id_file, cache):
    data = brain_id_file.read_bytes()
    with serving({CHECKPOINT: (data, "cut")}) as server:
        url = server.base + CHECKPOINT
        with pytest.raises(DownloadError, match=r"broke off after \d+ of \d+ bytes") as caught:
            create_encoder("brain_id", url, f_maps=8)
        assert url in str(caught.value) and "by hand" in str(caught.value)
        assert files_in(cache) == []

        server.routes[CHECKPOINT] = (data, "ok")
        model = create_encoder("brain_id", f"{url}#sha256={sha256_of(data)}", f_maps=8)
        assert model is not None and files_in(cache) == [cached_file(url)]


def test_no_server_or_an_http_error_names_the_url_and_the_way_out(cache):
    with serving({}) as server:
        missing = server.base + "/published/missing.pth"
        with pytest.raises(DownloadError, match="HTTP 404") as caught:
            create_encoder("brain_id", missing)
        assert str(caught.value).startswith(missing) and "pass the file's path" in str(caught.value)
        closed = server.base + CHECKPOINT
    with pytest.raises(DownloadError, match="cannot reach the server") as caught:
        create_encoder("brain_id", closed)  # the server is shut down: nothing listens on that port
    assert str(caught.value).startswith(closed) and "by hand" in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no urllib traceback
    assert files_in(cache) == []


def test_plain_http_is_refused_from_any_other_machine(cache):
    """Unencrypted bytes could be altered on the way; only a server on this machine may use http."""
    with pytest.raises(InputError, match="use https://"):
        create_encoder("brain_id", "http://example.org/brain_id.pth")
    assert files_in(cache) == []


def test_a_hash_prefix_in_the_file_name_is_checked_as_torch_hub_does(brain_id_file, cache):
    data = brain_id_file.read_bytes()
    good, bad = f"/w/brainid-{sha256_of(data)[:8]}.pth", "/w/brainid-deadbeef.pth"
    with serving({good: (data, "ok"), bad: (data, "ok")}) as server:
        assert download_weights(server.base + good).read_bytes() == data
        with pytest.raises(ChecksumMismatchError, match="deadbeef"):
            download_weights(server.base + bad)
        dated = "/w/brainid-20240101.pth"  # digits only: a date, not a hash
        server.routes[dated] = (data, "ok")
        assert download_weights(server.base + dated).read_bytes() == data


def test_urls_and_cache_locations_follow_torch_hub_conventions(cache, monkeypatch, tmp_path):
    assert weights_cache() == cache / "weights"
    monkeypatch.delenv("FM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert weights_cache() == tmp_path / "xdg" / "fm3d" / "weights"
    one = cached_file("https://host.example/a/fold0/weights.pth")
    two = cached_file("https://host.example/a/fold1/weights.pth#sha256=" + "a" * 64)
    assert one.name == two.name == "weights.pth" and one.parent != two.parent  # same name, no clash
    with pytest.raises(InputError, match="sha256=<64 hex digits>"):
        download_weights("https://host.example/w.pth#md5=0123")
    with pytest.raises(InputError, match="disagrees"):
        download_weights("https://host.example/w.pth#sha256=" + "a" * 64, sha256="b" * 64)


@torch.no_grad()
def test_a_published_segmenter_loads_from_a_url_and_reports_the_downloads_checksum(cache, tmp_path):
    torch.manual_seed(0)
    model = create_encoder("swin_bob_btcv", feature_size=12)
    path = tmp_path / "model_final.pt"
    torch.save({"epoch": 5000, "best_acc": np.float64(0.82), "state_dict": model.unetr.state_dict()}, path)
    data = path.read_bytes()
    with serving({"/ukbob/model_final.pt": (data, "ok")}) as server:
        url = server.base + "/ukbob/model_final.pt"
        segmenter, info = create_segmenter("swin_bob_btcv", pretrained=url, feature_size=12)
    assert info.model_id == url and info.sha256 == sha256_of(data)[:16]
    loaded = segmenter.net.encoder.unetr.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.unetr.state_dict().items())


def test_weights_list_covers_every_encoder_and_segmenter():
    done = CliRunner().invoke(weights, ["list"])
    assert done.exit_code == 0, done.output
    for name in (*list_encoders(), *list_segmenters()):
        assert re.search(rf"^  {re.escape(name)}\b", done.output, re.M), name
    assert "sha256" in done.output and "licence" in done.output

    done = CliRunner().invoke(weights, ["list", "--json"])
    assert done.exit_code == 0, done.output
    table = json.loads(done.output)
    assert set(table["encoders"]) == set(list_encoders())
    assert set(table["segmenters"]) == set(list_segmenters())
    for kind in ("encoders", "segmenters"):
        for name, rows in table[kind].items():
            assert rows, f"{kind} {name}: no published weights recorded"
            for row in rows:
                assert row["name"] == name and row["source"] and row["licence"] and row["format"]
                assert row["sha256"] == UNKNOWN or re.fullmatch(r"[0-9a-f]{64}", row["sha256"])
                assert row["download"] is None or row["download"].startswith("https://")
                assert row["released"] or row["download"] is None


@torch.no_grad()
def test_a_timm_safetensors_file_by_url_loads_as_the_hub_file_does(cache, tmp_path):
    """The Hub's resolve/... URL keeps the .safetensors name, so the file is read as safetensors."""
    import timm
    from safetensors.torch import save_file

    torch.manual_seed(0)
    published = timm.create_model("resnet18", pretrained=False)  # with its ImageNet classifier, as on the Hub
    path = tmp_path / "model.safetensors"
    save_file(published.state_dict(), str(path))
    route = "/timm/resnet18.a1_in1k/resolve/main/model.safetensors"
    with serving({route: (path.read_bytes(), "ok")}) as server:
        from_url = create_encoder("timm25d", server.base + route, size=(32, 32, 8))
    local = create_encoder("timm25d", path, size=(32, 32, 8))
    x = torch.rand(1, 1, 32, 32, 8)
    assert torch.equal(from_url.forward_features(x).embedding, local.forward_features(x).embedding)


def test_an_unwritable_cache_is_a_clear_error(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("FM_CACHE", str(blocker))
    with pytest.raises(InputFileError, match="cannot write the weights cache"):
        download_weights("https://host.invalid/w.pth")  # fails before any network access
