"""stripe_sync_core.tunnel through the real pyngrok, against the fake ngrok agent (loopback only)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import traceback
from pathlib import Path
from urllib.request import urlopen

import pytest
from fake_ngrok_support import FAKE_NGROK, fake_agent_pids
from pyngrok import conf, installer, process
from pyngrok.exception import PyngrokNgrokInstallError

from stripe_sync_core import tunnel as tunnel_mod
from stripe_sync_core.tunnel import ENV_NGROK_PATH, Tunnel, TunnelError, mask_token, open_tunnel

GOOD_TOKEN = "2fakeTokenForTests_abcdefghijklmnop1234"
PORT = 8765


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _endpoints(t: Tunnel) -> list[dict]:
    with urlopen(f"{t.api_url}/api/endpoints", timeout=5) as response:
        return json.load(response)["endpoints"]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for var in (ENV_NGROK_PATH, "NGROK_AUTHTOKEN", "FAKE_NGROK_VALID_TOKENS", "PYNGROK_NGROK_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("pyngrok tried to download ngrok")

    monkeypatch.setattr(installer, "install_ngrok", no_download)
    assert fake_agent_pids() == []
    yield
    leftovers = fake_agent_pids()
    for pid in leftovers:  # do not leak into other tests, but fail this one
        os.kill(pid, 9)
    assert leftovers == [], "fake ngrok agents left running"
    assert not process.is_process_running(str(FAKE_NGROK))
    assert tunnel_mod._debug_state() == {}
    assert not tunnel_mod._secrets


def test_fake_agent_cli() -> None:
    out = subprocess.run([str(FAKE_NGROK), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ngrok version 3.20.0"


def test_open_tunnel_forwards_and_close_stops_agent(tmp_path: Path) -> None:
    home_config = Path(os.environ["XDG_CONFIG_HOME"]) / "ngrok" / "ngrok.yml"
    t = open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK), config_dir=str(tmp_path / "cfg"))
    try:
        assert t.public_url.startswith("https://") and t.public_url.endswith(".ngrok-free.app")
        assert t.local_port == PORT
        assert t.upstream_url == f"http://127.0.0.1:{PORT}"
        assert GOOD_TOKEN not in repr(t)
        assert t.agent_pid in fake_agent_pids()
        assert t.is_running()

        [endpoint] = _endpoints(t)
        assert endpoint["url"] == t.public_url
        assert endpoint["upstream"]["url"] == f"http://127.0.0.1:{PORT}"

        config = (tmp_path / "cfg" / "ngrok.yml").read_text()
        assert "version" in config and GOOD_TOKEN not in config
        assert not home_config.exists()
    finally:
        t.close()

    assert t.closed and not t.is_running()
    assert not _alive(t.agent_pid)
    assert fake_agent_pids() == []
    t.close()  # idempotent


def test_close_removes_endpoint_while_agent_shared() -> None:
    with open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK)) as a:
        b = open_tunnel(PORT + 1, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK))
        assert a.agent_pid == b.agent_pid
        assert a.public_url != b.public_url
        assert {e["upstream"]["url"] for e in _endpoints(a)} == {a.upstream_url, b.upstream_url}

        b.close()
        assert [e["url"] for e in _endpoints(a)] == [a.public_url]
        assert _alive(a.agent_pid)
    assert not _alive(a.agent_pid)


def _redacting_loggers() -> list[str]:
    return [name for name in ("pyngrok.process", "pyngrok.process.ngrok", "pyngrok.ngrok", "pyngrok.installer")
            if any(type(f).__name__ == "_RedactTokens" for f in logging.getLogger(name).filters)]


def test_the_token_filter_is_on_pyngrok_loggers_only_while_a_tunnel_is_open() -> None:
    assert _redacting_loggers() == []  # importing the tunnel module changed nobody's logging
    with open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK)):
        with open_tunnel(PORT + 1, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK)):
            assert len(_redacting_loggers()) == 4
        assert len(_redacting_loggers()) == 4  # one tunnel still open
    assert _redacting_loggers() == []
    assert not any(isinstance(h, logging.NullHandler) for h in logging.getLogger("pyngrok").handlers)


def test_two_tunnels_in_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_NGROK_PATH, str(FAKE_NGROK))
    first = open_tunnel(PORT, GOOD_TOKEN)
    first.close()
    second = open_tunnel(PORT, GOOD_TOKEN)
    try:
        assert second.public_url.startswith("https://")
        assert second.public_url != first.public_url
        assert second.agent_pid != first.agent_pid
        assert not _alive(first.agent_pid)
        assert [e["url"] for e in _endpoints(second)] == [second.public_url]
    finally:
        second.close()
    assert not _alive(second.agent_pid)


def test_other_token_while_agent_running_is_refused() -> None:
    with open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK)):
        with pytest.raises(TunnelError, match="another auth token") as info:
            open_tunnel(PORT, "2otherTokenForTests_zyxwvutsrq9999", ngrok_path=str(FAKE_NGROK))
        assert "zyxwvutsrq" not in str(info.value)


def test_missing_binary_path_fails_fast(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "ngrok"
    with pytest.raises(TunnelError) as info:
        open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(missing))
    assert ENV_NGROK_PATH in str(info.value)
    assert str(missing) in str(info.value)
    assert GOOD_TOKEN not in "".join(traceback.format_exception(info.value))


def test_missing_binary_from_env_var(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ENV_NGROK_PATH, str(tmp_path / "ngrok"))
    with pytest.raises(TunnelError, match=ENV_NGROK_PATH):
        open_tunnel(PORT, GOOD_TOKEN)


def test_not_executable_binary(tmp_path: Path) -> None:
    binary = tmp_path / "ngrok"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o644)
    with pytest.raises(TunnelError, match="not executable"):
        open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(binary))


def test_not_installed_and_download_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tunnel_mod.shutil, "which", lambda name: None)
    monkeypatch.setattr(conf, "DEFAULT_NGROK_PATH", str(tmp_path / "pyngrok" / "ngrok"))
    calls = []

    def failing_download(path: str, **kwargs: object) -> None:
        calls.append(path)
        raise PyngrokNgrokInstallError("An error occurred while downloading ngrok from https://bin.ngrok.com/x: "
                                       "<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(installer, "install_ngrok", failing_download)
    with pytest.raises(TunnelError) as info:
        open_tunnel(PORT, GOOD_TOKEN)
    message = str(info.value)
    assert "could not be downloaded" in message and ENV_NGROK_PATH in message
    assert calls == [str(tmp_path / "pyngrok" / "ngrok")]
    assert installer._print_progress_enabled is True

    calls.clear()
    with pytest.raises(TunnelError, match=ENV_NGROK_PATH):
        open_tunnel(PORT, GOOD_TOKEN, allow_download=False)
    assert calls == []


@pytest.mark.parametrize("token", ["", "   ", None])
def test_empty_token(monkeypatch: pytest.MonkeyPatch, token: str | None) -> None:
    monkeypatch.setenv("NGROK_AUTHTOKEN", GOOD_TOKEN)  # must not be picked up silently
    with pytest.raises(TunnelError, match="no ngrok auth token"):
        open_tunnel(PORT, token, ngrok_path=str(FAKE_NGROK))  # type: ignore[arg-type]


def _assert_token_hidden(err: TunnelError, token: str, caplog: pytest.LogCaptureFixture) -> None:
    rendered = "".join(traceback.format_exception(err))
    assert token not in rendered
    assert err.__cause__ is None and err.__suppress_context__
    assert mask_token(token) in str(err)
    assert all(token not in record.getMessage() for record in caplog.records)


def test_malformed_token_is_rejected_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = "not a real token 9876"
    with pytest.raises(TunnelError) as info:
        open_tunnel(PORT, token, ngrok_path=str(FAKE_NGROK))
    err = info.value
    assert err.ngrok_error_code == "ERR_NGROK_105"
    assert "rejected the auth token ********9876" in str(err)
    _assert_token_hidden(err, token, caplog)
    # pyngrok did log the agent's error line (which echoes the token), but masked
    assert any("ERR_NGROK_105" in r.getMessage() and "********9876" in r.getMessage() for r in caplog.records)


def test_invalid_token_is_rejected_masked(monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("FAKE_NGROK_VALID_TOKENS", GOOD_TOKEN)
    token = "2revokedTokenForTests_abcdefgh4321"
    with pytest.raises(TunnelError) as info:
        open_tunnel(PORT, token, ngrok_path=str(FAKE_NGROK))
    assert info.value.ngrok_error_code == "ERR_NGROK_107"
    _assert_token_hidden(info.value, token, caplog)

    with open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK)) as t:  # the agent recovers
        assert t.public_url.startswith("https://")


def test_mask_token() -> None:
    assert mask_token(GOOD_TOKEN) == "********1234"
    assert mask_token("short") == "********"
    assert mask_token("") == "<empty>"


def test_silent_agent_hits_startup_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_NGROK_STARTUP_DELAY", "30")  # prints one line, then hangs
    with pytest.raises(TunnelError, match="did not come up within 1s"):
        open_tunnel(PORT, GOOD_TOKEN, ngrok_path=str(FAKE_NGROK), startup_timeout=1)
