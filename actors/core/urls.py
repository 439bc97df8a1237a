"""Camera source URLs and the S3 endpoint: what they mean and whether they can work, checked without network I/O.

A task's ``rtsp_url`` is one of:

- a live stream: ``rtsp://``, ``rtsps://``, ``rtmp://``, ``http://`` or ``https://`` with a host (``LIVE_SCHEMES``);
- ``synthetic://NAME?width=&height=&fps=&shapes=&fail_open=``: generated frames (``parse_synthetic``);
- ``asset:NAME``: a file shipped in ``actors/assets`` (``resolve_asset``);
- anything else: a local file path, relative to the working directory.

The checks here raise ``ValueError`` with a message that names the value and the fix; ``config.check_config`` adds
the key path. The only I/O is a stat of local files (a camera that is down is not a configuration error).
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ASSET_PREFIX = "asset:"
ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
LIVE_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https")
SYNTHETIC_PREFIX = "synthetic://"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
"""A URL is what starts with ``scheme://``; without ``//`` it is a file path (``clip:1.mp4`` is a file name)."""
_WHITESPACE = re.compile(r"\s")
_SOURCE_KINDS = "rtsp://, rtsps://, rtmp://, http://, https://, synthetic://, asset:NAME or a file path"
_OTHER_SOURCES = "asset:NAME, rtsp://HOST/PATH or synthetic://NAME"


class SyntheticParams(msgspec.Struct, frozen=True, kw_only=True):
    """The parameters of a ``synthetic://`` source; the defaults are those of a URL that leaves them out."""

    name: str = ""
    width: int = 640
    height: int = 360
    fps: float = 25.0
    shapes: int = 3
    """Moving rectangles drawn on each frame."""
    fail_open: bool = False
    """True: the source cannot be opened (tests of the reopen and give-up paths)."""


def _flag(text: str) -> bool:
    if text in ("0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise ValueError(text)


#: Query key -> (parser, accepted values, what to write).
_SYNTHETIC_RULES: dict[str, tuple[Callable[[str], Any], Callable[[Any], bool], str]] = {
    "width": (int, lambda v: 16 <= v <= 8192, "an integer from 16 to 8192"),
    "height": (int, lambda v: 16 <= v <= 8192, "an integer from 16 to 8192"),
    "fps": (float, lambda v: 0 < v <= 1000, "a number above 0 and at most 1000"),
    "shapes": (int, lambda v: 0 <= v <= 64, "an integer from 0 to 64"),
    "fail_open": (_flag, lambda v: True, "0 or 1"),
}


def parse_synthetic(url: str) -> SyntheticParams:
    """``synthetic://NAME?width=640&height=360&fps=25&shapes=3&fail_open=0`` -> its parameters.

    The one parser of these URLs, for the configuration check and for ``SyntheticSource``. Raises ValueError naming
    the URL, the parameter and the values it accepts."""
    if not url.startswith(SYNTHETIC_PREFIX):
        raise ValueError(f"bad synthetic source {url!r}: it must start with {SYNTHETIC_PREFIX}")
    name, _, query = url[len(SYNTHETIC_PREFIX):].partition("?")
    values: dict[str, Any] = {}
    try:
        _no_whitespace(url)
        for item in filter(None, query.split("&")):
            key, _, text = item.partition("=")
            values[key] = _synthetic_value(key, text, values)
    except ValueError as exc:
        raise ValueError(f"bad synthetic source {url!r}: {exc}") from None
    return SyntheticParams(name=name, **values)


def _synthetic_value(key: str, text: str, seen: dict[str, Any]) -> Any:
    if key not in _SYNTHETIC_RULES:
        raise ValueError(f"unknown parameter {key!r}; the parameters are {', '.join(_SYNTHETIC_RULES)}")
    if key in seen:
        raise ValueError(f"{key} is given twice; keep one")
    parse, accepted, rule = _SYNTHETIC_RULES[key]
    try:
        value = parse(text)
    except ValueError:
        value = None
    if value is None or not accepted(value):
        raise ValueError(f"{key} must be {rule}, got {text!r}")
    return value


def is_live(url: str) -> bool:
    """A stream that delivers frames on its own clock (a camera), as opposed to a file or a synthetic source."""
    return url.startswith(tuple(f"{scheme}://" for scheme in LIVE_SCHEMES))


def resolve_asset(path: str) -> str:
    """``asset:NAME`` -> the file shipped in ``actors/assets``; anything else unchanged."""
    if path.startswith(ASSET_PREFIX):
        return str(ASSETS_DIR / path[len(ASSET_PREFIX):])
    return path


def shipped_assets() -> list[str]:
    """The names ``asset:NAME`` accepts (the shipped files, not their notices)."""
    return sorted(p.name for p in ASSETS_DIR.iterdir() if p.is_file() and p.suffix != ".md")


def check_source_url(url: str) -> None:
    """Raise ValueError if ``url`` cannot be a task's source: a malformed URL, an unknown scheme, bad synthetic
    parameters, an unknown asset, a missing file. Does no network I/O (files are stat'ed)."""
    if url.startswith(ASSET_PREFIX):
        _check_asset(url[len(ASSET_PREFIX):])
        return
    match = _SCHEME.match(url)
    if match is None:
        _check_file(url)
    elif match.group(1) == "synthetic":
        parse_synthetic(url)
    elif match.group(1) in LIVE_SCHEMES:
        _check_live(url)
    else:
        raise ValueError(f"bad camera URL {url!r}: {_unknown_scheme(match.group(1))}")


def _unknown_scheme(scheme: str) -> str:
    if scheme == "file":
        return "file:// URLs are not read; write the file's path itself (/videos/clip.mp4)"
    if scheme.lower() in (*LIVE_SCHEMES, "synthetic"):
        return f"write the scheme in lowercase ({scheme.lower()}://)"
    return f"unknown scheme {scheme!r}; use {_SOURCE_KINDS}"


def _check_live(url: str) -> None:
    try:
        _no_whitespace(url)
        check_url_host(url)
    except ValueError as exc:
        raise ValueError(f"bad camera URL {url!r}: {exc}") from None


def check_url_host(url: str) -> None:
    """``scheme://[user:password@]HOST[:PORT]/...`` has a host and, if any, a valid port; raises ValueError."""
    host, port = split_host_port(urllib.parse.urlsplit(url).netloc.rpartition("@")[2])  # after user:password@
    if not host:
        raise ValueError(f"no host; write {url.partition('://')[0]}://HOST[:PORT]/PATH")
    if port is not None:
        check_port(port)


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` replaced by ``***@``, for listings, stats and logs."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" not in authority:
        return url
    return f"{scheme}://***@{authority.rpartition('@')[2]}{slash}{path}"


def _check_asset(name: str) -> None:
    shipped = shipped_assets()
    if name not in shipped:
        raise ValueError(
            f"unknown asset {name!r}; asset:NAME names a file shipped in actors/assets: {', '.join(shipped)}"
        )


def _check_file(path: str) -> None:
    """The file must exist now: a path is not a camera that may come back later."""
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a directory; give the path of a video file")
    if not os.path.exists(path):
        where = "" if os.path.isabs(path) else f" (relative paths start at the working directory, {os.getcwd()})"
        raise ValueError(f"no such file {path!r}{where}; give an existing video file, or use {_OTHER_SOURCES}")


def _no_whitespace(text: str, fix: str = "remove it or percent-encode it (%20)") -> None:
    if _WHITESPACE.search(text):
        raise ValueError(f"contains whitespace; {fix}")


def split_host_port(hostport: str) -> tuple[str, str | None]:
    """``host:port``, ``[v6addr]:port`` or ``host`` -> (host, port text or None when there is no ``:``)."""
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError("unclosed '[' in an IPv6 address; write [ADDRESS]:PORT")
        host, rest = hostport[: end + 1], hostport[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"unexpected {rest!r} after the IPv6 address; write [ADDRESS]:PORT")
        return host, rest[1:] if rest else None
    host, sep, port = hostport.rpartition(":")
    return (host, port) if sep else (port, None)


def check_port(port: str) -> None:
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        raise ValueError(f"bad port {port!r}; use a number from 1 to 65535")


def check_endpoint(endpoint: str) -> None:
    """An S3 endpoint is ``host:port`` and nothing else: the scheme comes from ``use_ssl``, a prefix from
    ``base_path``. Raises ValueError saying what to write instead."""
    try:
        if "://" in endpoint:
            hostport = endpoint.split("://", 1)[1].split("/", 1)[0]
            raise ValueError(f"no scheme allowed; write host:port only ({hostport!r}) and set use_ssl = true for https")
        if "/" in endpoint:
            raise ValueError(f"no path allowed; write host:port only ({endpoint.split('/', 1)[0]!r}) "
                             "and put a key prefix in base_path")
        _no_whitespace(endpoint, "remove it")
        host, port = split_host_port(endpoint)
        if not host:
            raise ValueError("no host; write host:port, e.g. '127.0.0.1:9000'")
        if port is None:
            raise ValueError(f"no port; write host:port, e.g. '{host}:9000'")
        check_port(port)
    except ValueError as exc:
        raise ValueError(f"bad endpoint {endpoint!r}: {exc}") from None
