"""Fixtures for the browser tests: the real server as a subprocess and Debian's Chromium.

The server runs as ``python -m signaling.cli serve`` on a free loopback port with ICE host
candidates restricted to 127.0.0.1 and no STUN/TURN servers, so the tests need no network
beyond loopback (``scripts/test.sh`` runs them inside a loopback-only network namespace).
Chromium is driven by Playwright but never downloaded: the fixture launches
``/usr/bin/chromium`` and the tests skip when it is missing.
"""

from __future__ import annotations

import contextlib
import subprocess
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from signaling.serverproc import ServerStartError, start_server, stop_server, wait_healthy

CHROMIUM = Path("/usr/bin/chromium")
REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIR = REPO_ROOT / "artifacts" / "screenshots"
SERVER_START_TIMEOUT_S = 60.0

CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--autoplay-policy=no-user-gesture-required",
]


@dataclass
class ServerProcess:
    """A running ``sfu serve`` subprocess."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    page_logs: list[str] = field(default_factory=list)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _wait_healthy(server: ServerProcess) -> None:
    try:
        wait_healthy(server.base_url, server.process, SERVER_START_TIMEOUT_S)
    except ServerStartError as exc:
        pytest.fail(f"{exc}; log:\n{server.log()}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Record each phase's report on the item so fixtures can tell whether the test failed.
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)


@pytest.fixture(scope="module")
def chromium() -> Path:
    """Debian's Chromium; the e2e tests skip (before starting a server) when it is missing."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture(scope="module")
def server_env() -> dict[str, str]:
    """Extra environment for the module's server (a test module overrides this fixture to
    change a setting, e.g. ``SFU_MAX_UPLOAD_BYTES``)."""
    return {}


@pytest.fixture(scope="module")
def sfu_server(
    chromium: Path, tmp_path_factory: pytest.TempPathFactory, server_env: dict[str, str]
) -> Iterator[ServerProcess]:
    """Start ``sfu serve`` on a free port and wait for ``GET /healthz``; stop it afterwards."""
    tmp = tmp_path_factory.mktemp("sfu")
    data_dir = tmp / "data"
    data_dir.mkdir()
    log_path = tmp / "server.log"
    # The lowest bcrypt cost: the test accounts need no strength.
    with log_path.open("wb") as log_file:
        process, url = start_server(
            data_dir,
            env={"SFU_BCRYPT_COST": "4", **server_env},
            output=log_file,
            log_level="info",
        )
    server = ServerProcess(url, process, log_path)
    try:
        _wait_healthy(server)
        yield server
    finally:
        stop_server(process)


async def create_room(
    base_url: str,
    room_name: str,
    email: str,
    *,
    kind: str = "conference",
    display_name: str = "Owner",
    invite_role: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Register a room owner through the accounts API, create a room of ``kind`` and an
    invite; returns (the owner's account session, the invite: ``code``, ``role``...).

    The invite of a conference room makes speakers, a podcast room's makes listeners (unless
    ``invite_role`` says otherwise); the owner joins as the host.
    """
    import aiohttp

    async with aiohttp.ClientSession(base_url) as http:
        account = {
            "email": email,
            "password": "e2e-Quiet-Harbour-42",
            "display_name": display_name,
        }
        async with http.post("/api/register", json=account) as resp:
            assert resp.status == 201, await resp.text()
            session: dict[str, Any] = await resp.json()
        auth = {"Authorization": f"Bearer {session['access_token']}"}
        body = {"name": room_name, "kind": kind}
        async with http.post("/api/rooms", json=body, headers=auth) as resp:
            assert resp.status == 201, await resp.text()
            room = (await resp.json())["room"]
        invite_body: dict[str, Any] = {"max_uses": 10}
        if invite_role is not None:
            invite_body["role"] = invite_role
        async with http.post(
            f"/api/rooms/{room['id']}/invites", json=invite_body, headers=auth
        ) as resp:
            assert resp.status == 201, await resp.text()
            invite: dict[str, Any] = await resp.json()
    return session, invite


async def create_invite(base_url: str, room_name: str, email: str) -> str:
    """A conference room's invite code (see :func:`create_room`). Joining needs a room
    token; the browser client gets one by redeeming the invite link ``/join/{code}``."""
    _session, invite = await create_room(base_url, room_name, email)
    return str(invite["code"])


@pytest.fixture
def server(sfu_server: ServerProcess, request: pytest.FixtureRequest) -> Iterator[ServerProcess]:
    """The module's server; prints its log and the pages' console when the test fails."""
    start = len(sfu_server.log())
    sfu_server.page_logs.clear()
    yield sfu_server
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print("----- sfu serve log (this test) -----")
        print(sfu_server.log()[start:])
        print("----- browser console -----")
        print("\n".join(sfu_server.page_logs))


def write_noise_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 40) -> Path:
    """Write a Y4M clip (20 fps, 4:2:0) that a video encoder cannot squeeze much.

    Chromium's built-in fake camera is so simple that libvpx encodes it at about 480 kbit/s
    however much bandwidth it is given (measured: Chromium to Chromium over loopback, target
    1.7 Mbit/s, 455-516 kbit/s sent), so a bitrate assertion could never tell a server that lets
    the sender ramp up from one that does not. This clip pans a soft random texture and adds a
    little fresh noise to every frame: peer to peer, Chromium sends it at 1.5-1.7 Mbit/s, and
    at lower targets the encoder degrades gracefully (coarser quantisation, not frame bursts).
    """
    import numpy as np

    rng = np.random.default_rng(1234)
    texture = rng.integers(16, 235, size=(height, width)).astype(np.float32)
    for _ in range(2):  # soften: a 5-point blur, twice
        texture = (
            texture
            + np.roll(texture, 1, 0)
            + np.roll(texture, -1, 0)
            + np.roll(texture, 1, 1)
            + np.roll(texture, -1, 1)
        ) / 5
    texture = (texture - texture.mean()) * (100 / texture.std()) + 128
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F20:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            noise = rng.integers(-6, 7, size=(height, width))
            luma = np.clip(np.roll(texture, 4 * i, axis=1) + noise, 16, 235).astype(np.uint8)
            out.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)
    return path


def write_plain_y4m(path: Path, width: int = 640, height: int = 480, frames: int = 40) -> Path:
    """Write a cheap Y4M clip (20 fps, 4:2:0): a still gradient with a bright bar moving across.

    For tests that need a moving camera picture but not a 720p one. Chromium's built-in fake
    camera delivers the 1280x720 the client asks for (static/js/devices.js: a real camera is
    asked for 720p so that simulcast can send three layers), i.e. three VP8 encodings up to
    720p per publisher; a file-backed camera delivers the file's size (Chromium scales down,
    never up), here VGA, which libwebrtc sends as two layers at most and encodes at a few
    hundred kbit/s.
    """
    import numpy as np

    x = np.linspace(40, 200, width, dtype=np.float32)
    y = np.linspace(0, 30, height, dtype=np.float32)[:, None]
    background = (x[None, :] + y).astype(np.uint8)
    chroma = np.full((height // 2, width // 2), 128, dtype=np.uint8).tobytes()
    bar = max(8, width // 20)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F20:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            luma = background.copy()
            left = (i * (width - bar)) // max(1, frames - 1)
            luma[:, left : left + bar] = 235
            out.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)
    return path


@pytest.fixture(scope="session")
def plain_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The VGA clip of :func:`write_plain_y4m` (a cheap fake camera)."""
    return write_plain_y4m(tmp_path_factory.mktemp("media") / "plain.y4m")


@pytest.fixture(scope="session")
def fake_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The WAV file Chromium's fake microphone plays (see :func:`write_tone_wav`)."""
    return write_tone_wav(tmp_path_factory.mktemp("media") / "tone.wav")


def write_tone_wav(path: Path, frequency: float = 440.0, seconds: float = 4.0) -> Path:
    """A 48 kHz mono 16-bit WAV of a sine at -12 dBFS (Chromium loops it): a steady, clearly
    audible microphone, so audio levels and active speakers are deterministic."""
    import numpy as np

    rate = 48000
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.25 * 32767 * np.sin(2 * np.pi * frequency * t)).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


@pytest.fixture(scope="session")
def fake_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Y4M file Chromium's fake camera plays (see :func:`write_noise_y4m`)."""
    return write_noise_y4m(tmp_path_factory.mktemp("media") / "noise.y4m")


@contextlib.asynccontextmanager
async def launch_chromium(chromium: Path, args: list[str]) -> AsyncIterator[Any]:
    """Debian's Chromium, headless, with ``args`` (start from :data:`CHROMIUM_ARGS`)."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(chromium), headless=True, args=args)
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
async def browser(chromium: Path, fake_video: Path, fake_audio: Path) -> AsyncIterator[Any]:
    """Debian's Chromium, headless, with a fake camera (``fake_video``) and microphone
    (``fake_audio``)."""
    args = [
        *CHROMIUM_ARGS,
        f"--use-file-for-fake-video-capture={fake_video}",
        f"--use-file-for-fake-audio-capture={fake_audio}",
    ]
    async with launch_chromium(chromium, args) as browser:
        yield browser


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    return SCREENSHOT_DIR
