"""Checks on one packet's HTTP head: a request's line, headers and form fields, or a
response's headers and first body bytes. Pure functions on bytes, no state.

Every byte here is the sender's choice, so nothing is trusted: the head is cut to
:data:`HEAD_LIMIT` bytes, decoded with ``errors="replace"``, split into at most
:data:`MAX_LINES` lines and :data:`MAX_PARAMS` parameters, and what an explanation quotes is
escaped and cut to :data:`QUOTE_LIMIT` characters (:func:`quote`). Nothing is evaluated.
SQL injection and cross-site scripting are libinjection's verdicts (the library
ModSecurity and the OWASP Core Rule Set use); lookups like log4shell's ``${jndi:`` follow the
Core Rule Set's rule 944150; path traversal is ``../`` and its percent-encoded forms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

import libinjection

HEAD_LIMIT = 4096  # bytes of a packet's payload read at most
MAX_LINES = 64  # header lines read at most
MAX_PARAMS = 64  # query or form parameters checked at most
MAX_VALUE = 1024  # characters of one parameter or header value checked at most
QUOTE_LIMIT = 80  # characters of packet text an explanation quotes at most
METHODS = frozenset({"GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "PATCH"})
# headers an attacker fills and servers log (where log4shell strings were sent)
LOOKUP_HEADERS = ("user-agent", "referer", "x-forwarded-for", "x-api-version", "cookie",
                  "authorization", "x-client-ip", "x-real-ip", "from", "origin")
# OWASP CRS 944150 (and 932200's nesting): ${jndi:..., ${ctx:..., ${env:..., nested ${${
LOOKUP = re.compile(r"\$\{(?:[^}]{0,16}\$\{|\s*(?:jndi|ctx|env|sys|lower|upper|main|date|"
                    r"base64|java|spring|k8s|docker|bundle|log4j|web|marker|sd)\s*:)", re.I)
TRAVERSAL = ("../", "..\\", "..%2f", "..%5c", "%2e%2e", "%252e%252e", "..%252f")
EXECUTABLE_TYPES = frozenset({"application/x-msdownload", "application/x-dosexec",
                              "application/x-msdos-program", "application/x-ms-installer"})
EXECUTABLE_NAMES = (".exe", ".dll", ".scr")
FILENAME = re.compile(r"""filename\*?=(?:UTF-8'')?["']?([^"';\r\n]{1,200})""", re.I)
CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,8}(?:;[^\r\n]{0,64})?\r\n")


@dataclass(frozen=True, slots=True)
class Hit:
    """One thing found in one packet's head."""

    kind: str  # a key of event_records.BEHAVIOUR_KINDS: "web_attack", "malware_download"
    severity: str  # low .. critical (behaviour_base.SEVERITIES)
    what: str  # "SQL injection", "cross-site scripting", ...
    why: str  # the evidence in words, packet text quoted by quote()
    reverse: bool = False  # it is the other direction's doing (a server's answer to an attack)


def quote(text: str, limit: int = QUOTE_LIMIT) -> str:
    """Packet text as an explanation may show it: escaped to printable ASCII (so no control
    character, markup-breaking byte or terminal escape gets through as itself) and cut to
    ``limit`` characters, "..." marking a cut.

    >>> quote("id=1' OR 1=1\\x1b[2J")
    '"id=1\\' OR 1=1\\\\x1b[2J"'
    >>> len(quote("A" * 500)) <= 80 + 2
    True
    """
    shown = ascii(text[: limit + 1])[1:-1]  # escapes non-ASCII and control characters
    if len(shown) > limit:
        shown = shown[: limit - 3] + "..."
    return f'"{shown}"'


def check_request(head: bytes) -> list[Hit]:
    """What a request head (from its method on) shows of web attacks; [] for anything that
    is not a request line.

    >>> [h.what for h in check_request(b"GET /a?id=1%27+OR+1%3D1+--+ HTTP/1.1\\r\\n\\r\\n")]
    ['SQL injection']
    >>> check_request(b"GET /a?q=O%27Reilly HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
    []
    """
    text = head[:HEAD_LIMIT].decode("utf-8", errors="replace")
    section, _, body = text.partition("\r\n\r\n")
    lines = section.split("\n", MAX_LINES)[:MAX_LINES]
    method, _, rest = lines[0].rstrip("\r").partition(" ")
    uri = rest.rpartition(" HTTP/")[0] if " HTTP/" in rest else rest
    if method not in METHODS or not uri:
        return []
    headers = _headers(lines[1:])
    path, _, query = uri.partition("?")
    params = _params(query)
    if method in {"POST", "PUT", "PATCH"} and "x-www-form-urlencoded" in headers.get(
            "content-type", ""):
        params += _params(body)
    hits = [h for name, value in params[:MAX_PARAMS] if (h := _injection(name, value))]
    hits += _lookups(uri, headers) + _traversal(uri)
    xss_path = unquote(path[:MAX_VALUE])
    if not hits and "<" in xss_path and libinjection.is_xss(xss_path)["is_xss"]:
        hits.append(_web("cross-site scripting", "medium", f"in the path {quote(xss_path)}"))
    return hits


@dataclass(frozen=True, slots=True)
class Response:
    """A response head as far as one packet holds it."""

    status: str  # the status line
    ctype: str  # Content-Type, lower case, without parameters
    filename: str  # Content-Disposition's file name, "" none
    chunked: bool  # the body comes in chunks (its first bytes are a chunk's size line)
    body: bytes  # the body's first bytes in this packet, b"" when it starts in the next


def check_response(head: bytes) -> list[Hit]:
    """What a response head (from ``HTTP/1.``) shows of an executable being downloaded: a
    body that starts like one (``MZ``, ``\\x7fELF``), or a type or file name that says so.

    >>> check_response(b"HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\n\\r\\n<html>")
    []
    >>> check_response(b"HTTP/1.0 200 OK\\r\\n\\r\\n\\x7fELF\\x02\\x01")[0].what
    'Linux executable (ELF)'
    """
    response = parse_response(head)
    return judge_response(response) if response is not None else []


def parse_response(head: bytes) -> Response | None:
    """The head of a response, None when ``head`` does not hold a whole one."""
    raw = head[:HEAD_LIMIT]
    cut = raw.find(b"\r\n\r\n")
    if not raw.startswith(b"HTTP/1.") or cut < 0:
        return None
    lines = raw[:cut].decode("utf-8", errors="replace").split("\n", MAX_LINES)[:MAX_LINES]
    headers = _headers(lines[1:])
    name = FILENAME.search(headers.get("content-disposition", ""))
    return Response(lines[0].rstrip("\r")[:200],
                    headers.get("content-type", "").split(";")[0].strip().lower()[:200],
                    name.group(1).strip() if name else "",
                    "chunked" in headers.get("transfer-encoding", "").lower(), raw[cut + 4:])


def judge_response(response: Response) -> list[Hit]:
    """Whether ``response`` downloads an executable: by its body's first bytes, its type or
    its file name."""
    body, ctype, filename = response.body, response.ctype, response.filename
    if response.chunked:
        chunk = CHUNK_SIZE.match(body)
        body = body[chunk.end():] if chunk else body
    what = ""
    if body.startswith(b"MZ"):
        what = "Windows executable (MZ)"
    elif body.startswith(b"\x7fELF"):
        what = "Linux executable (ELF)"
    elif ctype in EXECUTABLE_TYPES:
        what = f"executable by its type {quote(ctype, 40)}"
    elif ctype == "application/octet-stream" and filename.lower().endswith(EXECUTABLE_NAMES):
        what = f"executable by its name {quote(filename, 40)}"
    if not what:
        return []
    named = f", file {quote(filename, 40)}" if filename and "name" not in what else ""
    return [Hit("malware_download", "high", what,
                f"{what} downloaded over plain HTTP ({quote(response.status, 40)}{named})")]


def _headers(lines: list[str]) -> dict[str, str]:
    """Header names (lower case) to their first value, each cut to MAX_VALUE."""
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            headers.setdefault(name.strip().lower(), value.strip()[:MAX_VALUE])
    return headers


def _params(text: str) -> list[tuple[str, str]]:
    """Percent-decoded (name, value) pairs of a query string or form body, bounded."""
    pairs = []
    for part in text.split("&", MAX_PARAMS)[:MAX_PARAMS]:
        name, _, value = part.partition("=")
        pairs.append((unquote_plus(name[:128]), unquote_plus(value[:MAX_VALUE])))
    return pairs


def _injection(name: str, value: str) -> Hit | None:
    """libinjection's verdict on one parameter's value."""
    if not value:
        return None
    shown = f"in the parameter {quote(name, 32)}: {quote(value)}"
    if libinjection.is_sql_injection(value)["is_sqli"]:
        return _web("SQL injection", "high", shown)
    if libinjection.is_xss(value)["is_xss"]:
        return _web("cross-site scripting", "medium", shown)
    return None


def _lookups(uri: str, headers: dict[str, str]) -> list[Hit]:
    """A ``${...:`` lookup (log4shell and kin) in the URI or a header servers log."""
    places = [("the URI", unquote(uri[:MAX_VALUE]))]
    places += [(f"the {name} header", headers[name]) for name in LOOKUP_HEADERS
               if name in headers]
    for where, value in places:
        found = LOOKUP.search(value)
        if found:
            return [_web("lookup injection (log4shell-style)", "critical",
                         f"in {where}: {quote(value[found.start():])}")]
    return []


def _traversal(uri: str) -> list[Hit]:
    """``../`` or an encoded form of it in the request's URI."""
    lowered = uri[:MAX_VALUE].lower()
    if any(t in lowered for t in TRAVERSAL):
        return [_web("path traversal", "high", f"in the URI {quote(unquote(lowered))}")]
    return []


def _web(what: str, severity: str, where: str) -> Hit:
    return Hit("web_attack", severity, what, f"{what} {where}")
