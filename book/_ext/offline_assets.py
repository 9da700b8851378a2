"""Keep the rendered VIB book free of view-time network requests.

The site must work offline, so every script, stylesheet and font comes from
``_static/vendor/`` (filled by ``scripts/fetch_site_assets.sh``; wired up in
``_config.yml`` under ``sphinx: config:``).  Two things cannot be configured away
there, and this extension handles them:

1. matplotlib's ``FuncAnimation.to_jshtml()`` output (stored in the notebooks as a
   ``text/html`` output) starts with
   ``<link rel="stylesheet" href="https://maxcdn.bootstrapcdn.com/font-awesome/4.4.0/css/font-awesome.min.css">``
   for the icons of its play/step buttons (see ``matplotlib/_animation_data.py``).
   Rather than editing notebook outputs, the link is rewritten per page, when the
   HTML is written, to the vendored Font Awesome 4.7 stylesheet (a superset of
   4.4 with the same class names).  Doing it in ``html-page-context`` lets
   Sphinx compute the right relative path for each page, and keeps the
   Font Awesome 4 CSS off pages that have no animation (the theme ships its own
   Font Awesome 6).

   The animation's ``<img>`` has no ``alt`` attribute; it is given the alt text of
   its cell's ``mystnb.image.alt`` metadata (the same key myst-nb uses for
   ordinary figure outputs), and a warning is emitted when that is missing.

2. A guard: after rewriting, every page is checked for resources that would be
   fetched from another host at view time (``<script src>``, stylesheet /
   preload ``<link>``, ``<img>``/``<iframe>``/``<source>``/... ``src``, CSS
   ``@import``/``url()``), including the page's head scripts and stylesheets
   added by Sphinx, the theme or myst-nb.  Each one is a build warning
   (``offline_assets.external``), so ``jupyter-book build -W`` fails on it.  The
   same happens when a vendored file the configuration points at is missing
   (``offline_assets.missing``: run ``bash scripts/fetch_site_assets.sh``).

Plain links (``<a href="https://...">``: Colab, GitHub) are navigation, not
view-time requests, and are left alone.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging

logger = logging.getLogger(__name__)

# Any Font Awesome 4.x stylesheet on a CDN (matplotlib pins 4.4.0 on maxcdn today).
FA4_CDN_RE = re.compile(
    r"""(?P<q>["'])(?:https?:)?//[^"']*?/font-awesome/4\.[0-9.]+/css/font-awesome(?:\.min)?\.css(?P=q)"""
)
ANIM_IMG_RE = re.compile(r"<img(?P<attrs>\s+id=\"_anim_img[0-9a-f]*\"[^>]*?)(?P<end>\s*/?>)")

# Tags/attributes whose URL is loaded by the browser when the page is shown.
RESOURCE_RE = re.compile(
    r"""<(?P<tag>script|img|iframe|source|video|audio|embed|track|input)\b[^>]*?\s(?:src|poster)\s*=\s*["'](?P<url>[^"']+)["']"""
    r"""|<object\b[^>]*?\sdata\s*=\s*["'](?P<odata>[^"']+)["']"""
    r"""|<link\b(?P<lattrs>[^>]*)>""",
    re.IGNORECASE,
)
LINK_HREF_RE = re.compile(r"""\shref\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
LINK_REL_RE = re.compile(r"""\srel\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
CSS_URL_RE = re.compile(r"""(?:@import\s+|url\()\s*["']?((?:https?:)?//[^"')\s]+)""", re.IGNORECASE)
# rel values that make the browser fetch the href.
FETCHING_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon", "shortcut", "manifest", "preconnect"}


def _is_external(url: str) -> bool:
    url = html.unescape(url).strip().lower()
    return url.startswith(("http://", "https://", "//"))


def external_resources(markup: str) -> list[str]:
    """URLs on other hosts that `markup` makes the browser load."""
    found = []
    for m in RESOURCE_RE.finditer(markup):
        if m.group("lattrs") is not None:
            attrs = m.group("lattrs")
            href, rel = LINK_HREF_RE.search(attrs), LINK_REL_RE.search(attrs)
            rels = set(rel.group(1).lower().split()) if rel else set()
            if href and rels & FETCHING_RELS and _is_external(href.group(1)):
                found.append(href.group(1))
        else:
            url = m.group("url") or m.group("odata")
            if url and _is_external(url):
                found.append(url)
    found += CSS_URL_RE.findall(" ".join(re.findall(r"<style\b[^>]*>(.*?)</style>", markup, re.S | re.I)))
    found += CSS_URL_RE.findall(" ".join(re.findall(r"""\sstyle\s*=\s*"([^"]*)\"""", markup, re.I)))
    return found


def _asset_filename(asset: Any) -> str:
    # Sphinx 7 gives _JavaScript/_CascadingStyleSheet objects (str subclasses with .filename)
    return str(getattr(asset, "filename", asset) or "")


def add_animation_alt(app: Sphinx, doctree: nodes.document) -> None:
    """Give the <img> of a to_jshtml() animation the alt text of its cell metadata."""
    for raw in list(doctree.findall(nodes.raw)):
        if "html" not in raw.get("format", "").split() or "_anim_img" not in raw.astext():
            continue
        text = raw.astext()
        if not ANIM_IMG_RE.search(text) or re.search(r"<img\s+id=\"_anim_img[^>]*\balt=", text):
            continue
        cell = raw.parent
        while cell is not None and cell.get("nb_element") != "cell_code":
            cell = cell.parent
        meta = (cell.get("cell_metadata") or {}) if cell is not None else {}
        mystnb = meta.get("mystnb") or {}
        alt = (mystnb.get("image") or {}).get("alt") or (mystnb.get("figure") or {}).get("caption")
        if not alt:
            logger.warning(
                'to_jshtml() animation without alt text: set the cell metadata {"mystnb": {"image": {"alt": "..."}}}',
                location=raw,
                type="offline_assets",
                subtype="alt",
            )
            continue
        alt_attr = f' alt="{html.escape(str(alt), quote=True)}"'
        new = ANIM_IMG_RE.sub(lambda m, a=alt_attr: f"<img{m.group('attrs')}{a}{m.group('end')}", text)
        raw.replace(raw[0], nodes.Text(new))


def _dedupe_assets(assets: list) -> list:
    """Drop repeated head assets (Sphinx 7.4 bug, see below), keeping the first of each."""
    seen, out = set(), []
    for asset in assets:
        attrs = getattr(asset, "attributes", {}) or {}
        key = (_asset_filename(asset), tuple(sorted((k, str(v)) for k, v in attrs.items())))
        if key not in seen:
            seen.add(key)
            out.append(asset)
    return out


def localise_page(app: Sphinx, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Point CDN links in the page body at vendored copies; warn about what is left."""
    # Sphinx 7.4 registers inline scripts added after Builder.init() (sphinx-thebe's
    # `const THEBE_JS_URL = ...`, sphinx-togglebutton's selector) twice: once as
    # filename None and again, in prepare_writing(), as filename ''. The second
    # `const` declaration is a SyntaxError in every page's console; drop the repeats.
    for key in ("script_files", "css_files"):
        if isinstance(context.get(key), list):
            context[key] = _dedupe_assets(context[key])

    body = context.get("body")
    if body and "font-awesome" in body:
        local = context["pathto"]("_static/" + app.config.offline_assets_fontawesome4, 1)
        context["body"] = body = FA4_CDN_RE.sub(lambda m: f"{m.group('q')}{local}{m.group('q')}", body)

    if not app.config.offline_assets_check:
        return
    external = external_resources(body or "")
    for key in ("script_files", "css_files"):
        external += [f for f in map(_asset_filename, context.get(key) or []) if _is_external(f)]
    for key in ("metatags", "extrahead"):  # raw head markup some extensions inject
        if isinstance(context.get(key), str):
            external += external_resources(context[key])
    for url in dict.fromkeys(external):
        logger.warning(
            f"page {pagename!r} loads {url} at view time; the site must work offline "
            "(vendor it via scripts/fetch_site_assets.sh and _config.yml, see book/_ext/offline_assets.py)",
            type="offline_assets",
            subtype="external",
        )


def check_vendored(app: Sphinx) -> None:
    """Warn early when the vendored files the config points at are missing."""
    if app.builder is None or app.builder.format != "html":
        return
    wanted = [app.config.offline_assets_fontawesome4, app.config.mathjax_path or ""]
    wanted += list(getattr(app.config, "nb_ipywidgets_js", {}) or {})
    wanted += [_asset_filename(f[0] if isinstance(f, (tuple, list)) else f) for f in app.config.html_js_files]
    wanted += [_asset_filename(f[0] if isinstance(f, (tuple, list)) else f) for f in app.config.html_css_files]
    static_dirs = [Path(app.confdir, p) for p in app.config.html_static_path]
    for rel in wanted:
        if not rel or _is_external(rel):
            continue
        if not any((d / rel).exists() for d in static_dirs):
            logger.warning(
                f"_static/{rel} is missing: run `bash scripts/fetch_site_assets.sh` before building",
                type="offline_assets",
                subtype="missing",
            )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_config_value("offline_assets_fontawesome4", "vendor/font-awesome/css/font-awesome.min.css", "html")
    app.add_config_value("offline_assets_check", True, "html")
    app.connect("builder-inited", check_vendored)
    app.connect("doctree-read", add_animation_alt)
    # after myst-nb has added its per-page widget scripts (priority 500)
    app.connect("html-page-context", localise_page, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
