"""FOUNDRY_MODEL_URL: the real service downloads a model folder's archive from a web server once, with progress in
/healthz (liveness: 200 throughout) while /readyz stays 503, then serves it; a restart uses the kept copy; a bad
archive is a clear state. The web server is a local one the test controls (tests/support/archive_server.py): it can
hold the body part-way, as a slow or stalled server would, until the test releases it."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import httpx
import pytest

from tests.support.archive_server import model_archive, serve_archive
from tests.support.process import GatewayProcess, log_events, start_gateway

pytestmark = pytest.mark.integration

NAME = "tiny-url"  # the archive's file name gives the id, as a folder's name does for FOUNDRY_MODEL_PATH
MODEL_ID = f"{NAME}-generic-cpu:1"


@pytest.fixture(scope="module")
def archive(tiny_model: Path) -> bytes:
    return model_archive(tiny_model, NAME)


def events(service: GatewayProcess) -> set[str]:
    return {e.get("event") for e in log_events(service.log_path)}


def serves_the_model(data: Path, log: Path, url: str) -> GatewayProcess:
    """A gateway started on `data` with FOUNDRY_MODEL_URL=`url` becomes ready with the model; stopped again."""
    service = start_gateway(data, log, FOUNDRY_MODEL_URL=url)
    try:
        assert service.wait_for_state({"ready"})["model"] == MODEL_ID
    finally:
        service.stop()
    return service


def test_a_model_url_is_downloaded_with_progress_served_and_kept(archive: bytes, tmp_path: Path) -> None:
    with serve_archive(archive, hold_at=len(archive) // 3) as server:
        url = server.url(f"{NAME}.tar.gz")
        service = start_gateway(tmp_path / "data", tmp_path / "first.log", FOUNDRY_MODEL_URL=url)
        try:
            body = service.wait_part_way()
            # Live, not ready: nothing that waits on /healthz (Compose, Docker) waits on the download.
            assert service.healthz().status_code == 200
            assert body["model"] == MODEL_ID and NAME in body["message"]
            assert body["download"]["size_bytes"] == len(archive)
            assert body["download"]["bytes_per_second"] > 0
            assert 0 < body["download"]["percent"] < 100, body
            readyz = service.readyz()
            assert readyz.status_code == 503 and readyz.json()["state"] == "downloading", readyz.text

            server.release()
            assert service.wait_for_state({"ready"})["model"] == MODEL_ID
            assert service.readyz().status_code == 200
            answer = httpx.post(
                f"{service.url}/v1/chat/completions",
                json={"model": MODEL_ID, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["choices"][0]["message"]["content"].strip()
        finally:
            service.stop()
        assert server.requests == 1
        assert {"model_download_started", "model_downloaded", "model_ready"} <= events(service)

        # The same URL again on the same volume: served from the kept folder, nothing downloaded.
        again = serves_the_model(tmp_path / "data", tmp_path / "second.log", url)
        assert server.requests == 1
        assert "model_archive_cached" in events(again) and "model_download_started" not in events(again)


def test_a_stop_mid_download_leaves_nothing_half_done(archive: bytes, tmp_path: Path) -> None:
    with serve_archive(archive, hold_at=len(archive) // 2) as server:
        url = server.url(f"{NAME}.tar.gz")
        held = start_gateway(tmp_path / "data", tmp_path / "held.log", FOUNDRY_MODEL_URL=url)
        held.wait_part_way()
        # 0, or death by the re-raised SIGTERM after a graceful shutdown (uvicorn's convention): not a SIGKILL.
        assert held.stop(timeout=15) in {0, -15}, held.log()
        assert "runtime_stopped" in events(held)
        # Nothing counts as downloaded: the next start downloads again, and serves.
        server.release()
        serves_the_model(tmp_path / "data", tmp_path / "again.log", url)
        assert server.requests == 2


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("body", "status", "state", "words"),
    [
        (b"", 404, "failed", "HTTP 404"),
        (b"<html>not an archive</html>" * 50, 200, "no_model", "did not give a .tar or .tar.gz archive"),
        (tar_gz({f"{NAME}/model.onnx": b"weights"}), 200, "no_model", "no genai_config.json"),
        (tar_gz({"../escaped.txt": b"x", f"{NAME}/genai_config.json": b"{}"}), 200, "no_model", "refused"),
    ],
    ids=["http-404", "not-a-tar", "no-genai-config", "path-outside"],
)
def test_a_bad_archive_is_a_clear_state(body: bytes, status: int, state: str, words: str, tmp_path: Path) -> None:
    with serve_archive(body, status=status) as server:
        service = start_gateway(
            tmp_path / "data", tmp_path / "g.log", FOUNDRY_MODEL_URL=server.url(f"models/{NAME}.tar.gz")
        )
        try:
            found = service.wait_for_state({"no_model", "failed", "ready"})
            assert found["state"] == state, found
            assert words in found["message"], found["message"]
            assert "FOUNDRY_MODEL_URL" in found["message"] and "service" in found["message"]  # which, and what to do
            assert service.healthz().status_code == 200  # it runs, and says what is wrong
            assert service.readyz().status_code == 503
        finally:
            service.stop()
        assert server.requests == 1
    # Nothing unpacked (not even next to the staging folder), and no partial download or staging folder left behind.
    assert not list((tmp_path / "data" / "models-from-url").iterdir())
