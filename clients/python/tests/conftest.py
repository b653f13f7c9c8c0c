"""Starts a real routerd (built by `swift build`) on a socket in a temporary folder."""

import os
import pathlib
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
STRONG = "gpt-4-1106-preview"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"


def routerd_binary() -> str:
    explicit = os.environ.get("ROUTERD_BIN")
    if explicit:
        return explicit
    for build in ("debug", "release"):
        path = ROOT / ".build" / build / "routerd"
        if path.exists():
            return str(path)
    message = "no routerd binary: run `swift build` first, or set ROUTERD_BIN"
    # CI sets ROUTERD_TEST_STRICT=1: there a missing daemon fails the tests instead of skipping them.
    if os.environ.get("ROUTERD_TEST_STRICT") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def daemon(tmp_path):
    """A routerd with a seeded random router and feedback enabled; yields its socket path."""
    socket = tmp_path / "routerd.sock"
    config = tmp_path / "routerd.yaml"
    config.write_text(
        f"""
socket: {{path: {socket}}}
plugins: {{search_paths: [{ROOT / 'plugins'}]}}
feedback: {{directory: {tmp_path / 'feedback'}}}
routers:
  random:
    plugin: random
    threshold: 0.5
    strong_model: {STRONG}
    weak_model: "{WEAK}"
    params: {{seed: 7}}
"""
    )
    log = open(tmp_path / "routerd.log", "wb")
    process = subprocess.Popen([routerd_binary(), "--config", str(config)], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 20
    while not socket.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError("routerd did not start:\n" + (tmp_path / "routerd.log").read_text())
        time.sleep(0.02)
    yield str(socket)
    process.terminate()
    process.wait(timeout=10)
    log.close()
