"""Secret values (API keys, tokens) and their removal from anything written to disk.

The secrets are the values of ``OPENAI_API_KEY``, ``OPENROUTER_API_KEY``, any
``*_API_KEY`` / ``*_TOKEN`` variable and any ``NAS_*`` variable whose name says key,
token or secret, and the credentials inside the endpoint's URL (``NAS_LLM_BASE_URL``, or
``OPENAI_BASE_URL`` which the ``openai`` client reads): the user and password of
``user:password@`` and the query's values (``?api-key=...``), read from the process
environment and from ``./.env``. Values shorter than 8 characters are ignored: scrubbing
them would mangle ordinary text. A message that names an endpoint shows it through
``redact_url``, without those credentials.

Users: the trace recorder (``scrub``), the CLI log handlers (``ScrubFilter``), the state
writer (``redact_text``), the session display (``scrub``) and the endpoint's error
messages (``redact_url``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, unquote_plus

__all__ = ["REDACTED", "SECRET_ENV_NAMES", "URL_ENV_NAMES", "ScrubFilter", "dotenv_values",
           "redact_text", "redact_url", "scrub", "secret_values", "url_secrets"]

SECRET_ENV_NAMES: tuple[str, ...] = ("OPENAI_API_KEY", "OPENROUTER_API_KEY")
# Endpoint URLs whose user info and query may hold credentials.
URL_ENV_NAMES: tuple[str, ...] = ("NAS_LLM_BASE_URL", "OPENAI_BASE_URL")
REDACTED = "[REDACTED]"
MIN_SECRET_LENGTH = 8


def dotenv_values(path: Path | None = None) -> dict[str, str]:
    """``KEY=VALUE`` lines of ``path`` (default ``./.env``); {} when unreadable.

    ``export`` prefixes, quotes and `` #`` comments are allowed. The file is UTF-8 (a byte
    order mark is skipped); a byte that is not is tolerated: only an entry whose name or
    value holds it is left out, with a one-line warning on stderr naming the file and the
    line (never the value), once per file and process.
    """
    path = Path.cwd() / ".env" if path is None else path
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="surrogateescape")
    except OSError:
        return {}
    values: dict[str, str] = {}
    undecodable: list[int] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.removeprefix("export ").partition("=")
        key, value = key.strip(), _unquote(value.strip())
        if _UNDECODABLE.search(key + value):
            undecodable.append(number)
            continue
        values[key] = value
    if undecodable:
        _warn_undecodable(path, undecodable)
    return values


_UNDECODABLE = re.compile(r"[\udc80-\udcff]")  # a byte that is not UTF-8 (surrogateescape)
_warned: set[Path] = set()


def _warn_undecodable(path: Path, lines: list[int]) -> None:
    where = path.resolve()
    if where in _warned:
        return
    _warned.add(where)
    which = (f"line {lines[0]} is not valid UTF-8 and was" if len(lines) == 1 else
             f"lines {', '.join(map(str, lines))} are not valid UTF-8 and were")
    print(f"warning: {path}: {which} ignored (the other lines are used); save the file as "
          "UTF-8", file=sys.stderr)


def _unquote(value: str) -> str:
    """A quoted value up to its closing quote (a comment may follow), else up to `` #``."""
    if value[:1] in ("'", '"') and value.find(value[0], 1) > 0:
        return value[1:value.find(value[0], 1)]
    return value.split(" #", 1)[0].rstrip()


def secret_values(environ: Mapping[str, str] | None = None,
                  extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Values never to record, longest first.

    Args:
        environ: the variables to search; None for the process environment plus ``./.env``.
        extra: further values to treat as secrets.
    """
    sources = [os.environ, dotenv_values()] if environ is None else [environ]
    values = {value.strip() for source in sources for name, value in source.items()
              if name in SECRET_ENV_NAMES or _is_secret_name(name)} | set(extra)
    values |= {secret for source in sources for name, value in source.items()
               if name in URL_ENV_NAMES for secret in url_secrets(value)}
    return tuple(sorted((v for v in values if len(v) >= MIN_SECRET_LENGTH),
                        key=len, reverse=True))


# scheme://user:password@host:port/path?query#fragment (RFC 3986; every part optional)
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)?(?P<authority>[^/?#]*)"
                  r"(?P<path>[^?#]*)(?:\?(?P<query>[^#]*))?")


def url_secrets(url: str) -> set[str]:
    """The user, the password and the query's values of ``url``, as written and decoded.

    ``http://user:pass%40word@host/v1?api-key=abc`` gives ``user``, ``pass%40word``,
    ``pass@word`` and ``abc`` (a query item without ``=`` counts as a value).
    """
    parts = _URL.match(url.strip())
    assert parts is not None  # every part is optional
    userinfo = parts["authority"].rpartition("@")[0]
    written = userinfo.split(":", 1) if userinfo else []
    for name, is_pair, value in (pair.partition("=") for pair in (parts["query"] or "").split("&")):
        written.append(value if is_pair else name)  # ?token alone is a value too
    return {form for value in written if value
            for form in (value, unquote(value), unquote_plus(value))}


def redact_url(url: Any) -> str:
    """``url`` as a message may show it: without user info, query and fragment.

    ``http://user:password@host:8000/v1?api-key=abc`` becomes ``http://host:8000/v1``.
    """
    parts = _URL.match(str(url).strip())
    assert parts is not None  # every part is optional
    return (parts["scheme"] or "") + parts["authority"].rpartition("@")[2] + parts["path"]


def _is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.endswith(("API_KEY", "_TOKEN")) or (
        upper.startswith("NAS_") and any(w in upper for w in ("KEY", "TOKEN", "SECRET"))
    )


def scrub(value: Any, secrets: Sequence[str]) -> Any:
    """Replace every secret inside strings of a JSON-like value by ``[REDACTED]``."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, Mapping):
        return {str(k): scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v, secrets) for v in value]
    return value


def redact_text(text: str, secrets: Sequence[str] | None = None) -> str:
    """``text`` (plain or JSON) with every secret replaced by ``[REDACTED]``.

    A secret is also looked for in its JSON-escaped form, so a JSON text stays valid.
    """
    secrets = secret_values() if secrets is None else secrets
    for secret in secrets:
        escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
        for form in {secret, escaped}:
            if form in text:
                text = text.replace(form, REDACTED)
    return text


class ScrubFilter(logging.Filter):
    """Scrubs every record a handler emits: the message is formatted, then redacted.

    Args:
        secrets: the values to remove; None to read them now (environment and ``./.env``).
    """

    def __init__(self, secrets: Sequence[str] | None = None) -> None:
        super().__init__()
        self.secrets = tuple(secret_values() if secrets is None else secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg = redact_text(record.getMessage(), self.secrets)
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact_text(record.exc_text, self.secrets)
        return True
