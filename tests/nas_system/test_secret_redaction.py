"""Secret values: where they come from, and their removal from logs and state files."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from informer_nas.nas_system.paths import WorkspacePaths
from informer_nas.nas_system.secrets import (
    REDACTED,
    ScrubFilter,
    redact_text,
    scrub,
    secret_values,
)
from informer_nas.nas_system.state import (
    AgentState,
    IterationScratch,
    compact_state,
    journal_path,
    load_state,
    save_state,
)

KEY = "sk-test-SECRET-0123456789"
DOTENV_KEY = "sk-dotenv-SECRET-9876543210"


@pytest.fixture
def keyed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A key in the environment, another in ``./.env``."""
    monkeypatch.chdir(tmp_path)
    for name in ("OPENAI_API_KEY", "OPENROUTER_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    (tmp_path / ".env").write_text(f'export OPENROUTER_API_KEY="{DOTENV_KEY}"  # router\n')
    return tmp_path


def test_secret_names_and_short_values() -> None:
    environ = {"OPENAI_API_KEY": KEY, "GITHUB_TOKEN": "ghp_abcdefgh123", "NAS_SECRET_X": "s" * 9,
               "ANTHROPIC_API_KEY": "short", "NAS_PLANNER_MODEL": "gpt-4o-mini-long",
               "HOME": "/home/someone"}
    assert secret_values(environ) == (KEY, "ghp_abcdefgh123", "s" * 9)


URL_CASES = {
    # user info: the user and the password are secrets, as written and decoded
    "userinfo": ("http://proxyuser:Pr0xyPassw0rd42@127.0.0.1:8000", "http://127.0.0.1:8000",
                 {"proxyuser", "Pr0xyPassw0rd42"}),
    # a query parameter carrying a key
    "query": ("http://127.0.0.1:8000/v1?api-key=QueryKeySecret123", "http://127.0.0.1:8000/v1",
              {"QueryKeySecret123"}),
    # percent-encoded password, several query items, a fragment
    "encoded": ("https://someuser:pass%40word99@host/v1?a=1&key=abc%2Bdefghi#top",
                "https://host/v1", {"someuser", "pass%40word99", "pass@word99", "abc%2Bdefghi",
                                    "abc+defghi"}),
    # an unclosed IPv6 bracket (urllib.parse would raise): still stripped
    "unparseable": ("http://someuser:Pr0xyPassw0rd42@[::1:8000/v1", "http://[::1:8000/v1",
                    {"someuser", "Pr0xyPassw0rd42"}),
    # nothing to hide
    "plain": ("https://api.openai.com/v1", "https://api.openai.com/v1", set()),
}


@pytest.mark.parametrize("case", sorted(URL_CASES))
def test_base_url_credentials_are_secrets_and_never_shown(case: str) -> None:
    from informer_nas.nas_system.secrets import redact_url

    url, shown, secrets = URL_CASES[case]
    assert redact_url(url) == shown
    for name in ("NAS_LLM_BASE_URL", "OPENAI_BASE_URL"):
        assert set(secret_values({name: url})) == secrets, name
    assert secret_values({"HOMEPAGE_URL": url}) == ()  # only the endpoint's URL variables


def test_base_url_credentials_from_dotenv_are_redacted(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NAS_LLM_BASE_URL", raising=False)
    (tmp_path / ".env").write_text("NAS_LLM_BASE_URL=http://proxyuser:Pr0xyPassw0rd42@h/v1\n")
    assert redact_text("GET http://proxyuser:Pr0xyPassw0rd42@h/v1 failed") == (
        f"GET http://{REDACTED}:{REDACTED}@h/v1 failed")


def test_environment_and_dotenv_are_both_read(keyed: Path) -> None:
    assert set(secret_values()) >= {KEY, DOTENV_KEY}


def test_scrub_and_redact_text() -> None:
    assert scrub({"a": [f"x {KEY}", 3]}, (KEY,)) == {"a": [f"x {REDACTED}", 3]}
    weird = 'ab"cd\\efgh12'
    text = json.dumps({"msg": f"key={weird}"})
    redacted = redact_text(text, (weird,))
    assert json.loads(redacted) == {"msg": f"key={REDACTED}"}


def test_filter_scrubs_message_arguments_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ScrubFilter((KEY,)))
    log = logging.getLogger("test_secrets.filter")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("server said: %s", f"Incorrect API key provided: {KEY}")
        try:
            raise RuntimeError(f"401 {KEY}")
        except RuntimeError:
            log.exception("call failed")
    finally:
        log.removeHandler(handler)
    written = stream.getvalue()
    assert KEY not in written
    assert f"Incorrect API key provided: {REDACTED}" in written and f"401 {REDACTED}" in written


def test_state_files_hold_no_key(keyed: Path) -> None:
    paths = WorkspacePaths(keyed / "ws")
    paths.root.mkdir()
    state = AgentState(preset="tiny", max_iterations=2)
    compact_state(paths, state)
    state.current = IterationScratch(iteration=1, rationale=f"authorised with {KEY}")
    save_state(paths, state)  # a journal line
    assert KEY not in journal_path(paths).read_text()
    assert load_state(paths).current.rationale == f"authorised with {REDACTED}"  # type: ignore[union-attr]
    state.current.rationale = f"and {DOTENV_KEY}"
    compact_state(paths, state)  # the snapshot
    assert DOTENV_KEY not in paths.state.read_text()


def test_dotenv_with_a_byte_that_is_not_utf8_keeps_its_other_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One Latin-1 byte made the whole .env silently ignored (the key, the base URL); now
    only the entry holding it is left out, with one warning naming the file and the line."""
    from informer_nas.nas_system.secrets import dotenv_values

    path = tmp_path / ".env"
    path.write_bytes(b"OPENAI_API_KEY=" + DOTENV_KEY.encode() + b"\n# caf\xe9 au lait\n"
                     b"NAS_PLANNER_MODEL=m\xe9del\nOPENROUTER_API_KEY=sk-\xe9-" + KEY.encode()
                     + b"\nexport NAS_LLM_BASE_URL=http://127.0.0.1:9/v1  # caf\xe9\n")
    assert dotenv_values(path) == {"OPENAI_API_KEY": DOTENV_KEY,
                                   "NAS_LLM_BASE_URL": "http://127.0.0.1:9/v1"}
    err = capsys.readouterr().err
    assert err.splitlines() == [f"warning: {path}: lines 3, 4 are not valid UTF-8 and were "
                                "ignored (the other lines are used); save the file as UTF-8"]
    assert KEY not in err and DOTENV_KEY not in err
    assert dotenv_values(path)["OPENAI_API_KEY"] == DOTENV_KEY
    assert capsys.readouterr().err == ""  # once per file


def test_dotenv_with_a_byte_order_mark(tmp_path: Path) -> None:
    """A .env saved by Notepad starts with a BOM: its first key was named '\\ufeffOPENAI...'."""
    from informer_nas.nas_system.secrets import dotenv_values

    path = tmp_path / ".env"
    path.write_bytes(b"\xef\xbb\xbfOPENAI_API_KEY=" + DOTENV_KEY.encode() + b"\r\n")
    assert dotenv_values(path) == {"OPENAI_API_KEY": DOTENV_KEY}
