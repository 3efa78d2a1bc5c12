"""Catalogue installs and downloads against loopback servers (Testing/model_server.py) serving zips built here:
a good download, a wrong hash, an interrupted transfer that resumes, a server that never answers, a 404, a
proxy, a cancel. Each ends as described, and the cache and downloads folders hold exactly what they should."""
from __future__ import annotations

import hashlib
import io
import json
import socket
import zipfile

import pytest
import torch

from model_server import (ETAG, FAST, closed_port_url, env, forwarding_proxy, model_server,  # noqa: F401 (env)
                          served, shipped_entry, silent_server, tree, write_catalogue)
from RadAISegmentLib.errors import CancelledError, ChecksumError, DownloadError, ModelError, UnsafeArchiveError
from RadAISegmentLib.models.cache import install_model
from RadAISegmentLib.models.catalogue import load_catalogue
from RadAISegmentLib.models.catalogue_install import install_from_catalogue
from RadAISegmentLib.models.catalogue_status import available_models
from RadAISegmentLib.models.download import DownloadSettings, check_url, download_file
from RadAISegmentLib.models.loaders import build_monai_network, load_from_card
from RadAISegmentLib.progress import CancelToken

def bundle_zip(test_data, name, shrink, extra_weights=(), evil=False):
    """A MONAI zoo bundle as the zoo zips it (top folder = bundle name): the real configs, random weights of
    the (shrunk) architecture. Returns the zip's bytes."""
    config = json.loads((test_data / "monai-bundle-configs" / name / "configs" / "inference.json").read_text())
    config["network_def"].update(shrink)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        zipped.writestr(f"{name}/configs/inference.json", json.dumps(config))
        zipped.write(test_data / "monai-bundle-configs" / name / "configs" / "metadata.json",
                     f"{name}/configs/metadata.json")
        for seed, weights in enumerate(("models/model.pt", *extra_weights)):
            torch.manual_seed(seed)
            network = build_monai_network(config["network_def"]["_target_"],
                                          {k: v for k, v in config["network_def"].items() if k != "_target_"})
            state = io.BytesIO()
            torch.save(network.state_dict(), state)
            zipped.writestr(f"{name}/{weights}", state.getvalue())
        if evil:
            zipped.writestr("../escaped.txt", "outside")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def spleen_zip(test_data):
    return bundle_zip(test_data, "spleen_ct_segmentation", {"channels": [4, 8, 16, 32, 64]})


def sha1(data):
    return hashlib.sha1(data).hexdigest()


def test_good_download_installs_both_wholebody_variants_with_publisher_sha1_and_coded_labels(test_data, env,
                                                                                               tmp_path):
    payload = bundle_zip(test_data, "wholeBody_ct_segmentation", {"init_filters": 8},
                         extra_weights=("models/model_lowres.pt",))
    with model_server() as server:
        server.files["/wb.zip"] = payload
        ids = ("wholeBody_ct_segmentation", "wholeBody_ct_segmentation_fast")
        catalogue = write_catalogue(tmp_path, [served(shipped_entry(i), server.url("/wb.zip"), sha1(payload))
                                               for i in ids])
        steps = []
        report = install_from_catalogue("wholeBody_ct_segmentation", catalogue=catalogue, settings=FAST,
                                        progress=lambda f, m: steps.append((f, m)))
        fast = install_from_catalogue("wholeBody_ct_segmentation_fast", catalogue=catalogue, settings=FAST).card
        again = install_from_catalogue("wholeBody_ct_segmentation", catalogue=catalogue, settings=FAST)
        assert len(server.log) == 2                          # the second call for an installed model fetched nothing
    card = report.card
    assert card.folder == env / "wholeBody_ct_segmentation" and "already installed" in again.notes[0]
    record = card.raw["source"]["archives"][0]
    assert record["sha1"] == sha1(payload) and record["sha256"] == hashlib.sha256(payload).hexdigest()
    assert record["hash_origin"] == "publisher SHA-1 (verified)" and report.notes == []
    fractions = [f for f, _ in steps]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and any(" MB" in m for _, m in steps)
    with zipfile.ZipFile(io.BytesIO(payload)) as zipped:
        members = {n.split("/", 1)[1] for n in zipped.namelist()}
    assert set(tree(env)) == {"wholeBody_ct_segmentation", "wholeBody_ct_segmentation_fast"} | {
        f"{model}/{path}" for model in ("wholeBody_ct_segmentation", "wholeBody_ct_segmentation_fast")
        for path in members | {"card.json", "configs", "models"}}           # nothing else: no downloads folder
    model, model_fast = load_from_card(card), load_from_card(fast)
    assert len(model.segments) == 104 and model.segments[0].name == "spleen"
    assert (model.segments[0].type.value, model.segments[0].type.scheme) == ("78961009", "SCT")
    assert model.spacing_mm == (1.5, 1.5, 1.5) and model_fast.spacing_mm == (3.0, 3.0, 3.0)
    assert fast.weights["file"] == "models/model_lowres.pt"
    lowres = hashlib.sha256((fast.folder / "models" / "model_lowres.pt").read_bytes()).hexdigest()
    assert fast.weights["sha256"] == lowres != card.weights["sha256"]


def test_wrong_hash_installs_nothing_and_deletes_the_download(spleen_zip, env, tmp_path):
    (env / "other-model").mkdir(parents=True)
    (env / "other-model" / "card.json").write_text("{}")
    before = tree(env)
    with model_server() as server:
        server.files["/spleen.zip"] = spleen_zip
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"),
                                                      server.url("/spleen.zip"), "0" * 40)])
        with pytest.raises(ChecksumError, match="SHA-1 .* publisher states 000000000000.*file was deleted"):
            install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
    assert tree(env) == before


@pytest.mark.parametrize("behaviour", ["drop_once", "ignore_range_drop_once"])
def test_interrupted_transfer_resumes_or_restarts_and_installs(spleen_zip, env, tmp_path, behaviour):
    """The connection drops half-way; the retry asks for the rest with Range + If-Range. A server that honours
    it sends 206 with the rest; one that ignores it sends the whole file again (200) and RadAI starts over."""
    half = len(spleen_zip) // 2
    with model_server() as server:
        server.files["/spleen.zip"], server.behaviour["/spleen.zip"] = spleen_zip, behaviour
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"),
                                                      server.url("/spleen.zip"), sha1(spleen_zip))])
        card = install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST).card
        assert server.log == [("/spleen.zip", None, None), ("/spleen.zip", f"bytes={half}-", ETAG)]
    assert card.raw["source"]["archives"][0]["sha1"] == sha1(spleen_zip)
    assert sorted(tree(env)) == ["spleen_ct_segmentation", "spleen_ct_segmentation/card.json",
                                 "spleen_ct_segmentation/configs", "spleen_ct_segmentation/configs/inference.json",
                                 "spleen_ct_segmentation/configs/metadata.json", "spleen_ct_segmentation/models",
                                 "spleen_ct_segmentation/models/model.pt"]


def test_repeated_drops_keep_the_partial_file_and_the_next_install_resumes(spleen_zip, env, tmp_path):
    half = len(spleen_zip) // 2
    settings = DownloadSettings(timeout_s=2.0, retries=1, backoff_s=0.0, chunk_bytes=4096)
    with model_server() as server:
        path = "/spleen_ct_segmentation_v0.5.9.zip"
        server.files[path], server.behaviour[path] = spleen_zip, "drop_always_ignore_range"
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), server.url(path),
                                                      sha1(spleen_zip))])
        with pytest.raises(DownloadError, match=r"closed after \d+ of \d+ bytes \(3 attempts\).*kept in .*\.part"):
            install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=settings)
        downloads = env / ".downloads"
        assert sorted(tree(env)) == [".downloads", ".downloads/spleen_ct_segmentation_v0.5.9.zip.part",
                                     ".downloads/spleen_ct_segmentation_v0.5.9.zip.part.json"]
        assert (downloads / "spleen_ct_segmentation_v0.5.9.zip.part").read_bytes() == spleen_zip[:half]
        status = available_models(catalogue)[0]
        assert not status.installed and status.partial_mb == pytest.approx(half / 1e6)
        server.behaviour[path] = "normal"
        install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=settings)
        assert server.log[-1] == (path, f"bytes={half}-", ETAG)
    assert not downloads.exists() and available_models(catalogue)[0].installed_version == "0.5.9"


def test_silent_server_times_out_naming_the_url_and_the_manual_route(env, tmp_path):
    settings = DownloadSettings(timeout_s=0.3, retries=1, backoff_s=0.0)
    with silent_server() as url:
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), url)])
        with pytest.raises(DownloadError) as raised:
            install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=settings)
    message = str(raised.value)
    assert f"Could not download {url}: no answer within 0.3 s (2 attempts)" in message
    assert "then run `radai models install model.zip` where you saved it" in message and "kept" not in message
    assert f"put it into {env / '.downloads'} and run `radai models install spleen_ct_segmentation` again" in message
    assert tree(env) == {}


def test_404_fails_at_once_and_leaves_nothing(env, tmp_path):
    with model_server() as server:
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"),
                                                      server.url("/missing.zip"))])
        with pytest.raises(DownloadError, match=r"missing\.zip: the server answered HTTP 404 Not Found\. To install"):
            install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
        assert len(server.log) == 1                                            # no retry for a 404
    assert tree(env) == {}


def test_no_network_is_named_as_such(env, monkeypatch, tmp_path):
    def offline(*args, **kwargs):
        raise socket.gaierror(-3, "Temporary failure in name resolution")
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    url = "https://models.example.org/spleen_ct_segmentation_v0.5.9.zip"
    with pytest.raises(DownloadError, match="could not be resolved — no network connection"):
        download_file(url, tmp_path / "dl" / "x.zip", settings=DownloadSettings(retries=0))
    monkeypatch.undo()
    with closed_port_url() as refused:
        with pytest.raises(DownloadError, match="connection was refused"):
            download_file(refused, tmp_path / "dl" / "x.zip", settings=DownloadSettings(retries=0))
    assert not list((tmp_path / "dl").iterdir())


def test_a_file_fetched_by_hand_is_installed_without_network(spleen_zip, env, tmp_path):
    with closed_port_url() as url:
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), url, sha1(spleen_zip))])
        (env / ".downloads").mkdir(parents=True)
        (env / ".downloads" / "model.zip").write_bytes(spleen_zip)
        report = install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
    assert "already in the downloads folder" in report.notes[0] and report.downloaded_bytes == 0
    assert not (env / ".downloads").exists() and (env / "spleen_ct_segmentation" / "card.json").is_file()


def test_cancel_during_download_leaves_nothing(spleen_zip, env, tmp_path):
    token = CancelToken()

    def progress(fraction, message):
        if fraction > 0.1:
            token.cancel()
    with model_server() as server:
        server.files["/s.zip"] = spleen_zip
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), server.url("/s.zip"),
                                                      sha1(spleen_zip))])
        with pytest.raises(CancelledError):
            install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST, progress=progress,
                                   cancel=token)
    assert tree(env) == {}


def test_background_install_job_reports_progress_and_cancels_cleanly(spleen_zip, env, tmp_path):
    """What Slicer's Models section runs: the install in a thread, polled, with Cancel."""
    import time
    from RadAISegmentLib.models.download_job import ModelInstallJob
    with model_server() as server:
        server.files["/s.zip"], server.behaviour["/s.zip"] = spleen_zip, "slow"
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), server.url("/s.zip"),
                                                      sha1(spleen_zip))])
        job = ModelInstallJob("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
        while job.fraction == 0.0 and not job.done:
            time.sleep(0.01)
        assert " MB" in job.message and "%)" in job.statusText() and not job.done
        job.cancel()
        with pytest.raises(CancelledError):
            job.result()
        assert tree(env) == {}
        server.behaviour["/s.zip"] = "normal"
        finished = ModelInstallJob("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
        assert finished.result().card.id == "spleen_ct_segmentation" and finished.fraction == 1.0
    assert sorted(tree(env)) == ["spleen_ct_segmentation", "spleen_ct_segmentation/card.json",
                                 "spleen_ct_segmentation/configs", "spleen_ct_segmentation/configs/inference.json",
                                 "spleen_ct_segmentation/configs/metadata.json", "spleen_ct_segmentation/models",
                                 "spleen_ct_segmentation/models/model.pt"]


def test_unsafe_archive_is_refused_whole(test_data, env, tmp_path):
    payload = bundle_zip(test_data, "spleen_ct_segmentation", {"channels": [4, 8, 16, 32, 64]}, evil=True)
    with model_server() as server:
        server.files["/s.zip"] = payload
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), server.url("/s.zip"),
                                                      sha1(payload))])
        with pytest.raises(UnsafeArchiveError, match="escaped.txt"):
            install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
    assert tree(env) == {} and not list(tmp_path.rglob("escaped.txt"))


def test_proxy_from_the_environment_is_used(spleen_zip, env, tmp_path, monkeypatch):
    with model_server() as server, forwarding_proxy() as (proxy, seen):
        server.files["/s.zip"] = spleen_zip
        monkeypatch.setenv("http_proxy", proxy)
        catalogue = write_catalogue(tmp_path, [served(shipped_entry("spleen_ct_segmentation"), server.url("/s.zip"),
                                                      sha1(spleen_zip))])
        install_from_catalogue("spleen_ct_segmentation", catalogue=catalogue, settings=FAST)
        assert seen == [server.url("/s.zip")] and len(server.log) == 1
    assert (env / "spleen_ct_segmentation" / "card.json").is_file()


def test_only_https_or_loopback_and_no_insecure_redirect(env, tmp_path):
    for url in ("http://example.org/m.zip", "ftp://example.org/m.zip", "file:///etc/passwd", "https:///m.zip"):
        with pytest.raises(DownloadError, match="only https://"):
            check_url(url)
    for url in ("https://example.org/m.zip", "http://127.0.0.1:8000/m.zip", "http://localhost/m.zip",
                "http://[::1]:80/m.zip"):
        check_url(url)
    with model_server() as server:
        server.behaviour["/m.zip"] = "redirect:http://example.org/m.zip"
        with pytest.raises(DownloadError, match="redirects to http://example.org/m.zip, which is not https"):
            download_file(server.url("/m.zip"), tmp_path / "dl" / "m.zip", settings=FAST)
        assert len(server.log) == 1
    assert not list((tmp_path / "dl").iterdir())


def test_install_from_url_keeps_working_and_cleans_up(spleen_zip, env):
    with model_server() as server:
        server.files["/spleen.zip"] = spleen_zip
        card = install_model(server.url("/spleen.zip"), settings=FAST)
        with pytest.raises(DownloadError, match=r"radai models install gone\.zip"):
            install_model(server.url("/gone.zip"), settings=FAST)
    assert card.id == "spleen_ct_segmentation" and not (env / ".downloads").exists()


def test_too_little_disk_space_is_refused_before_downloading(env, tmp_path, monkeypatch):
    import collections
    import shutil
    monkeypatch.setattr(shutil, "disk_usage", lambda path: collections.namedtuple("u", "total used free")(
        10**12, 10**12 - 100 * 10**6, 100 * 10**6))                       # 100 MB free
    with pytest.raises(ModelError, match=r"totalsegmentator_total needs about 2\.8 GB free .* only 0\.1 GB"):
        install_from_catalogue("totalsegmentator_total", catalogue=load_catalogue(), settings=FAST)
    assert tree(env) == {}                                   # refused before any download was tried


def test_unknown_catalogue_id_suggests_close_ids(env, tmp_path):
    with pytest.raises(ModelError, match="Did you mean spleen_ct_segmentation.*radai models available"):
        install_from_catalogue("spleen_ct_segmentaton", catalogue=load_catalogue())
    assert tree(env) == {}
