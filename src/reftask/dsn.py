"""Postgres DSNs: the one place that parses, validates and redacts them.

Two forms are accepted, as libpq accepts them: a URL (``postgresql://user:pw@host:5432/db?...``)
and keyword/value pairs (``host=... port=... user=... password='p w' dbname=...``). Both come
out as a :class:`Dsn`, whose :meth:`Dsn.url` is the percent-encoded URL asyncpg is handed, so a
password holding ``@``, ``:`` or ``/`` reaches the server intact.

Invariant: no text racetape prints or stores carries a password in clear; every such text goes
through :func:`redact_dsn` (results, reports, errors), which works on a DSN, a command line or
an error message alike.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

SCHEMES = ("postgresql", "postgres")
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Parameters racetape passes on (asyncpg understands each of them, in the URL's query).
PARAMETERS = frozenset(
    {
        "host", "port", "user", "password", "dbname", "database", "sslmode", "sslrootcert",
        "sslcert", "sslkey", "sslcrl", "passfile", "target_session_attrs", "application_name",
    }
)  # fmt: skip
REDACTED = "***"

_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*:)[^\s]*@")
_PASSWORD_PAIR = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&]*)", re.IGNORECASE)


class DsnError(ValueError):
    """A DSN that cannot be used; the message is one line naming the part that is wrong."""


_Fail = Callable[[str, str], DsnError]  # parse_dsn's fail(part, message)


def redact_dsn(text: str) -> str:
    """``text`` with every password in it replaced by ``***``: a URL's ``user:password@`` (up
    to the last ``@``, as a password may hold one), and any ``password=`` pair, in a query or
    in keyword/value form. Safe on any text: a DSN, a command line, an error message."""
    text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
    return _PASSWORD_PAIR.sub(rf"\g<1>{REDACTED}", text)


@dataclass(frozen=True)
class Dsn:
    """A validated DSN. ``params`` are the query parameters (sslmode, ...), in order."""

    hosts: tuple[tuple[str, int | None], ...]
    user: str | None = None
    password: str | None = None
    database: str | None = None
    params: tuple[tuple[str, str], ...] = ()

    def url(self) -> str:
        """The DSN as a percent-encoded ``postgresql://`` URL (what asyncpg is given)."""
        auth = ""
        if self.user is not None:
            auth = urllib.parse.quote(self.user, safe="")
            if self.password is not None:
                auth += ":" + urllib.parse.quote(self.password, safe="")
            auth += "@"
        hosts = ",".join(
            (f"[{h}]" if ":" in h else urllib.parse.quote(h, safe=""))
            + ("" if p is None else f":{p}")
            for h, p in self.hosts
        )
        path = "/" + urllib.parse.quote(self.database, safe="") if self.database else ""
        query = "?" + urllib.parse.urlencode(self.params) if self.params else ""
        return f"postgresql://{auth}{hosts}{path}{query}"

    def redacted(self) -> str:
        return redact_dsn(self.url())


def parse_dsn(text: str, source: str = "DSN") -> Dsn:
    """Parse and validate ``text``; :class:`DsnError` names ``source`` (``--pg-dsn``,
    ``RACETAPE_PG_DSN``) and the part that is wrong. Nothing is connected to."""

    def fail(part: str, message: str) -> DsnError:
        return DsnError(f"{source}: {part}: {message}")

    stripped = text.strip()
    if not stripped:
        raise fail("dsn", "empty; expected postgresql://USER@HOST:PORT/DB or host=... port=...")
    if "://" in stripped:
        return _parse_url(stripped, fail)
    if "=" in stripped:
        return _parse_pairs(stripped, fail)
    raise fail(
        "dsn",
        f"{redact_dsn(stripped)!r} is neither a postgresql:// URL nor keyword=value pairs",
    )


def _port(value: str, fail: _Fail) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise fail("port", f"{value!r} is not a port number (1-65535)")
    return int(value)


def _check_params(pairs: list[tuple[str, str]], fail: _Fail) -> None:
    for key, value in pairs:
        if key not in PARAMETERS:
            raise fail(key, f"unknown parameter; known: {', '.join(sorted(PARAMETERS))}")
        if key == "sslmode" and value not in SSLMODES:
            raise fail("sslmode", f"{value!r} is not one of {', '.join(SSLMODES)}")
        if key == "port":
            for port in value.split(","):
                _port(port, fail)


def _parse_url(text: str, fail: _Fail) -> Dsn:
    scheme, _, rest = text.partition("://")
    if scheme.lower() not in SCHEMES:
        raise fail("scheme", f"{scheme!r}:// is not postgresql:// (or postgres://)")
    # The authority ends at the first '/', '?' or '#' after the last '@' (a password may hold
    # '@', ':' or '/'; percent-encoded or not, it is read up to the last '@').
    auth, at, tail = rest.rpartition("@")
    if not at:
        auth, tail = "", rest
    hostspec, path, query = re.match(r"([^/?#]*)(/[^?#]*)?(?:\?([^#]*))?", tail).groups()  # type: ignore[union-attr]
    user = password = None
    if at:
        user_text, colon, password_text = auth.partition(":")
        user = urllib.parse.unquote(user_text) or None
        password = urllib.parse.unquote(password_text) if colon else None
    hosts = []
    for spec in hostspec.split(",") if hostspec else []:
        host, port = _host_port(spec, fail)
        hosts.append((host, port))
    try:
        pairs = urllib.parse.parse_qsl(query or "", keep_blank_values=True, strict_parsing=True)
    except ValueError:
        raise fail("query", f"{redact_dsn(query or '')!r} is not key=value&key=value") from None
    _check_params(pairs, fail)
    database = urllib.parse.unquote(path[1:]) if path and path != "/" else None
    return Dsn(tuple(hosts), user, password, database, tuple(pairs))


def _host_port(spec: str, fail: _Fail) -> tuple[str, int | None]:
    if spec.startswith("["):  # [IPv6]:port
        host, bracket, port_part = spec[1:].partition("]")
        if not bracket or (port_part and not port_part.startswith(":")):
            raise fail("host", f"{spec!r} is not [IPv6] or [IPv6]:PORT")
        return host, _port(port_part[1:], fail) if port_part else None
    host, colon, port_text = spec.partition(":")
    if not host and colon:
        raise fail("host", f"{spec!r} has a port but no host")
    return urllib.parse.unquote(host), _port(port_text, fail) if colon else None


_PAIR = re.compile(r"\s*([A-Za-z_]+)\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)")


def _parse_pairs(text: str, fail: _Fail) -> Dsn:
    values: dict[str, str] = {}
    position = 0
    while position < len(text):
        match = _PAIR.match(text, position)
        if match is None:
            if not text[position:].strip():
                break
            raise fail("dsn", f"cannot read keyword=value at {redact_dsn(text[position:])!r}")
        key, raw = match.groups()
        value = re.sub(r"\\(.)", r"\1", raw[1:-1]) if raw.startswith("'") else raw
        values[key] = value
        position = match.end()
    _check_params(list(values.items()), fail)
    ports: list[int | None] = [_port(p, fail) for p in values.pop("port", "").split(",") if p]
    ports = ports or [None]
    names = [h for h in values.pop("host", "").split(",") if h] or ["localhost"]
    if len(ports) == 1:
        ports = ports * len(names)
    if len(ports) != len(names):
        raise fail("port", f"{len(ports)} ports for {len(names)} hosts")
    user = values.pop("user", None)
    password = values.pop("password", None)
    database = values.pop("dbname", None) or values.pop("database", None)
    return Dsn(
        tuple(zip(names, ports, strict=True)), user, password, database, tuple(values.items())
    )
