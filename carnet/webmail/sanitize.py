"""Allow-list sanitising of the HTML body of a message before the webmail shows it.

An HTML body (``text/html``, RFC 2854) is hostile input: :func:`sanitize_html` reduces it, with nh3 (the ammonia
HTML5 sanitiser), to a fragment that is safe inside the ``<body>`` of a document with no further escaping:

- only ordinary formatting elements survive (:data:`ALLOWED_TAGS`); the elements that carry code, load things or
  take input (``script``, ``style``, ``iframe``, ``object``, ``svg``, ``math``, form controls, ``meta``, ``base``,
  ``link``…) are removed together with their content, other unknown elements are unwrapped (their text is kept);
  comments, conditional comments included, are stripped;
- attributes are allow-listed per element (:data:`ALLOWED_ATTRIBUTES`): no event handler, no ``id``/``name``
  (they could clash with or spoof the page), no ``class``;
- ``a href`` keeps ``http``, ``https``, ``mailto`` and ``tel`` URLs only, and every link gets
  ``rel="noopener noreferrer"`` and ``target="_blank"``;
- ``img src`` keeps ``cid:`` references (RFC 2392) to the message's own images, replaced by the ``data:`` URI
  given in ``cid_images``, and ``data:image/(png|jpeg|gif|webp);base64,…`` URIs (RFC 2397); anything else, remote
  or not, is removed: a message must not be able to tell its sender that, when and where it was read;
- the ``style`` attribute keeps a conservative set of CSS properties (:data:`ALLOWED_CSS_PROPERTIES`) and no
  declaration that could load something or run code (``url(``, ``expression(``, ``@import``, ``\\`` escapes,
  ``javascript:``, functions other than colours and ``calc``).

:attr:`Sanitized.remote_blocked` says how many remote references were removed, for a "remote images blocked"
notice. It is counted on the input with the stdlib :class:`html.parser.HTMLParser`: every URL with a scheme
other than ``data:`` and ``cid:``, or protocol-relative (``//host/…``), in ``src``, in each candidate of
``srcset``, in ``background``, ``poster``, ``object data``, SVG ``image``/``use`` ``href`` and ``<link href>``,
and every such CSS ``url(…)``, and every ``@import``, in ``style`` attributes and ``<style>`` elements. Relative
references (which would resolve against the webmail itself) are removed as well but not counted. All of these
are always removed, so the count is what was removed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import unquote

import nh3

__all__ = [
    "ALLOWED_ATTRIBUTES",
    "ALLOWED_CSS_PROPERTIES",
    "ALLOWED_TAGS",
    "Sanitized",
    "sanitize_html",
]

#: Elements kept (RFC 2854 bodies use the HTML vocabulary; these only format text).
ALLOWED_TAGS: frozenset[str] = frozenset(
    {
        "p", "br", "div", "span", "b", "i", "u", "em", "strong", "small", "sub", "sup", "s", "blockquote", "pre",
        "code", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "hr", "table", "thead",
        "tbody", "tfoot", "tr", "td", "th", "caption", "colgroup", "col", "a", "img", "font", "center", "abbr",
        "address",
        # further purely presentational elements that mail clients commonly produce
        "big", "strike", "tt", "del", "ins", "mark", "q", "cite", "kbd", "samp", "var", "wbr",
    }
)  # fmt: skip

#: Elements removed together with everything inside them.
_DROPPED_WITH_CONTENT: frozenset[str] = frozenset(
    {
        "script", "style", "title", "head", "noscript", "template", "iframe", "frame", "frameset", "noframes",
        "object", "embed", "applet", "param", "svg", "math", "select", "textarea", "button", "option", "optgroup",
        "datalist", "meta", "base", "link", "xmp", "noembed", "plaintext", "audio", "video", "canvas", "dialog",
    }
)  # fmt: skip

#: Attributes allowed on every kept element.
_GENERIC_ATTRIBUTES: frozenset[str] = frozenset({"style", "align", "dir", "lang", "title"})

#: Attributes allowed per element (``"*"``: on every element).
ALLOWED_ATTRIBUTES: dict[str, frozenset[str]] = {
    "*": _GENERIC_ATTRIBUTES,
    "a": frozenset({"href", "title"}),
    "img": frozenset({"src", "alt", "width", "height", "title"}),
    "td": frozenset({"colspan", "rowspan", "align", "valign", "width"}),
    "th": frozenset({"colspan", "rowspan", "align", "valign", "width"}),
    "table": frozenset({"border", "cellpadding", "cellspacing", "width", "align"}),
    "font": frozenset({"color", "size", "face"}),
}

_SIDES = ("top", "right", "bottom", "left")
_MARGIN_PADDING = [f"{box}{side}" for box in ("margin", "padding") for side in ("", *(f"-{s}" for s in _SIDES))]
_BORDERS = [
    "border", "border-color", "border-style", "border-width", "border-collapse", "border-spacing", "border-radius",
    *(f"border-{side}" for side in _SIDES),
    *(f"border-{side}-{what}" for side in _SIDES for what in ("color", "style", "width")),
    *(f"border-{corner}-radius" for corner in ("top-left", "top-right", "bottom-left", "bottom-right")),
]  # fmt: skip

#: CSS properties kept in ``style`` attributes: colours, fonts, text, box spacing and borders, sizes (not
#: ``position``, ``behavior``, ``-moz-binding``, ``background``/``background-image``, ``border-image``, ``cursor``,
#: ``content``, ``list-style-image``: nothing that positions over the page or can reference a resource).
ALLOWED_CSS_PROPERTIES: frozenset[str] = frozenset(
    [
        "color", "background-color",
        "font", "font-family", "font-size", "font-style", "font-variant", "font-weight", "font-stretch",
        "text-align", "text-decoration", "text-decoration-color", "text-decoration-line", "text-decoration-style",
        "text-indent", "text-transform", "text-overflow",
        "width", "height", "min-width", "max-width", "min-height", "max-height",
        "line-height", "vertical-align", "white-space", "display",
        "letter-spacing", "word-spacing", "word-break", "overflow-wrap", "word-wrap", "list-style-type",
        *_MARGIN_PADDING,
        *_BORDERS,
    ]
)  # fmt: skip

#: URL schemes nh3 lets through; narrowed per attribute by the attribute filter.
_URL_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto", "tel", "cid", "data"})
_LINK_SCHEMES: frozenset[str] = frozenset({"http", "https", "mailto", "tel"})

_DATA_IMAGE = re.compile(r"data:image/(?:png|jpeg|gif|webp);base64,[A-Za-z0-9+/=\s]*", re.IGNORECASE)
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
# WHATWG URL parsing strips leading/trailing C0 controls and spaces, and removes tabs and newlines anywhere.
_URL_STRIP = "".join(chr(c) for c in range(0x21))
_URL_REMOVE = re.compile(r"[\t\n\r]")

_CSS_COMMENT = re.compile(r"/\*.*?(?:\*/|\Z)", re.DOTALL)
_CSS_FORBIDDEN = re.compile(r"url\s*\(|expression|@import|\\|javascript:|vbscript:|behavior|binding|[<>{}]", re.I)
_CSS_FUNCTION = re.compile(r"([A-Za-z_\-][A-Za-z0-9_\-]*)\s*\(")
_CSS_SAFE_FUNCTIONS: frozenset[str] = frozenset({"rgb", "rgba", "hsl", "hsla", "calc"})
_CSS_PROPERTY = re.compile(r"-?[a-z][a-z\-]*")
# A reference in CSS: ``@import "…"`` or ``@import url(…)`` (one reference), or ``url(…)``.
_CSS_REFERENCE = re.compile(
    r"""@import\s*(?:url\s*\(\s*)?(?P<q1>["']?)(?P<imp>[^"')\s;]*)|url\s*\(\s*(?P<q2>["']?)(?P<url>[^"')\s]*)""",
    re.IGNORECASE,
)

_LANG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_DIMENSION = re.compile(r"\d{1,5}%?")
_NUMBER = re.compile(r"\d{1,4}")
_ALIGN = frozenset({"left", "right", "center", "justify", "top", "middle", "bottom", "baseline", "char"})


@dataclass(frozen=True, slots=True)
class Sanitized:
    """The result of :func:`sanitize_html`."""

    html: str
    """A safe HTML fragment (body content only)."""
    remote_blocked: int
    """How many remote references (images, backgrounds, style sheets…) were removed."""


def _normalise_url(value: str) -> str:
    """The URL as a browser reads it (WHATWG URL §4.4: C0 controls and spaces trimmed, tabs/newlines removed)."""
    return _URL_REMOVE.sub("", value.strip(_URL_STRIP))


def _scheme(url: str) -> str | None:
    """The lower-case scheme (RFC 3986 §3.1) of a normalised URL, ``None`` for a relative reference."""
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _is_remote(value: str) -> bool:
    """Whether a reference would make the reader fetch something: any scheme but ``data:``/``cid:``, or ``//…``."""
    url = _normalise_url(value)
    if url.startswith(("//", "\\\\", "/\\", "\\/")):  # network-path references (RFC 3986 §4.2), as browsers see them
        return True
    scheme = _scheme(url)
    return scheme is not None and scheme not in ("data", "cid")


def _count_css(css: str) -> int:
    """How many remote ``url(…)`` and how many ``@import`` references a piece of CSS holds."""
    count = 0
    for match in _CSS_REFERENCE.finditer(css):
        if match.group("imp") is not None or _is_remote(match.group("url") or ""):
            count += 1
    return count


class _RemoteCounter(HTMLParser):
    """Counts the remote references of a document (see the module documentation)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.count = 0
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is None:
                continue
            if name in ("src", "background", "poster") or (name == "data" and tag == "object"):
                self.count += _is_remote(value)
            elif name == "srcset":  # HTML §4.8.4.2: comma-separated "URL descriptor" candidates
                candidates = (candidate.split() for candidate in value.split(","))
                self.count += sum(_is_remote(words[0]) for words in candidates if words)
            elif name in ("href", "xlink:href") and tag in ("link", "image", "use", "feimage"):
                self.count += _is_remote(value)
            elif name == "style":
                self.count += _count_css(value)
        if tag == "style":
            self._in_style = True

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag == "style":
            self._in_style = False

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.count += _count_css(data)


_FALLBACK_ATTRIBUTE = re.compile(
    r"""\s(?:src|background|poster|data)\s*=\s*["']?([^"'\s>]*)|<link\b[^>]*?\shref\s*=\s*["']?([^"'\s>]*)""",
    re.IGNORECASE,
)


def _count_remote(html: str) -> int:
    """The number of remote references in ``html``; a rough regular-expression count if the parser gives up."""
    counter = _RemoteCounter()
    try:
        counter.feed(html)
        counter.close()
    except Exception:  # the stdlib parser raises on some malformed markup (``<![bogus[``)
        found = _FALLBACK_ATTRIBUTE.finditer(html)
        return sum(_is_remote(match.group(1) or match.group(2) or "") for match in found) + _count_css(html)
    return counter.count


def _split_declarations(style: str) -> list[str]:
    """Split a declaration list on ``;`` outside strings and parentheses (CSS Syntax §5.4.5, simplified)."""
    parts: list[str] = []
    current: list[str] = []
    quote = ""
    depth = 0
    for char in style:
        if quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth = max(depth - 1, 0)
        elif char == ";" and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _clean_style(style: str) -> str | None:
    """Keep the harmless declarations of a ``style`` attribute (CSS Style Attributes §2, CSS 2.1 §4.1.8)."""
    kept: list[str] = []
    for declaration in _split_declarations(_CSS_COMMENT.sub(" ", style)):
        name, colon, value = declaration.partition(":")
        name, value = name.strip().lower(), value.strip()
        if not colon or not value or not _CSS_PROPERTY.fullmatch(name) or name not in ALLOWED_CSS_PROPERTIES:
            continue
        if _CSS_FORBIDDEN.search(value) or value.count('"') % 2 or value.count("'") % 2:
            continue
        if any(function.lower() not in _CSS_SAFE_FUNCTIONS for function in _CSS_FUNCTION.findall(value)):
            continue
        kept.append(f"{name}: {value}")
    return "; ".join(kept) if kept else None


def _image_source(value: str, cid_images: Mapping[str, str]) -> str | None:
    """An ``img src`` that is a known ``cid:`` (RFC 2392 §2) or an inline raster ``data:`` image (RFC 2397)."""
    url = _normalise_url(value)
    scheme = _scheme(url)
    if scheme == "cid":
        # RFC 2392 §2: the URL is the Content-ID without its angle brackets, %hh-escaped; compared as is.
        return cid_images.get(unquote(url[4:], errors="replace"))
    if scheme == "data" and _DATA_IMAGE.fullmatch(url):
        return re.sub(r"\s+", "", url)
    return None


def _make_filter(cid_images: Mapping[str, str]) -> Callable[[str, str, str], str | None]:
    """The nh3 ``attribute_filter``: per-attribute URL, CSS and value checks (``None`` drops the attribute)."""

    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        stripped = value.strip()
        if attribute == "style":
            return _clean_style(value)
        if tag == "a" and attribute == "href":
            url = _normalise_url(value)
            return url if _scheme(url) in _LINK_SCHEMES else None
        if tag == "img" and attribute == "src":
            return _image_source(value, cid_images)
        if attribute == "lang":
            return stripped if _LANG.fullmatch(stripped) else None
        if attribute == "dir":
            return stripped.lower() if stripped.lower() in ("ltr", "rtl", "auto") else None
        if attribute in ("align", "valign"):
            return stripped.lower() if stripped.lower() in _ALIGN else None
        if attribute in ("width", "height"):
            return stripped if _DIMENSION.fullmatch(stripped) else None
        if attribute in ("colspan", "rowspan", "border", "cellpadding", "cellspacing"):
            return stripped if _NUMBER.fullmatch(stripped) else None
        return value

    return attribute_filter


def sanitize_html(html: str, *, cid_images: Mapping[str, str] | None = None) -> Sanitized:
    """Reduce an HTML body (RFC 2854) to a safe fragment (see the module documentation).

    ``cid_images`` maps Content-IDs (RFC 2045 §7, without the angle brackets) to the ``data:`` URIs that replace
    the ``cid:`` references (RFC 2392) to them; keys are compared case-sensitively with the %-unescaped reference.
    """
    images: Mapping[str, str] = cid_images or {}
    cleaned = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        clean_content_tags=set(_DROPPED_WITH_CONTENT),
        attributes={tag: set(names) for tag, names in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_make_filter(images),
        strip_comments=True,
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        url_schemes=set(_URL_SCHEMES),
        url_relative="deny",
        filter_style_properties=set(ALLOWED_CSS_PROPERTIES),
    )
    return Sanitized(html=cleaned, remote_blocked=_count_remote(html))
