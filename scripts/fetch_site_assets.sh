#!/usr/bin/env bash
# Vendor the browser assets the built book needs, so that the site works offline:
# no page of _build/html loads anything from a CDN at view time.
#
#   MathJax 3 ............................ math typesetting (Sphinx `mathjax_path`)
#   Vega 5, Vega-Lite 5, vega-embed 6 .... the β explorer's chart, which runs in the page with no kernel
#                                          (chosen over Plotly: 828 KB minified, 278 KB gzipped, against
#                                          plotly.js-basic's 1071 KB and 354 KB, measured 2026-12-07)
#   Font Awesome 4 ....................... icon font of the matplotlib `FuncAnimation.to_jshtml()` controls
#                                          (matplotlib/_animation_data.py links font-awesome 4.4.0 from
#                                          maxcdn; book/_ext/offline_assets.py points that link here)
#
# Everything is installed from the npm registry at pinned versions into a temporary
# prefix and the needed files are copied to book/_static/vendor/ (git-ignored).
# The paths below are referenced from _config.yml (sphinx: config:) and
# book/_ext/offline_assets.py: keep them in sync.
#
# Usage: bash scripts/fetch_site_assets.sh      (run from anywhere; needs node + npm)
# Re-running is cheap: it does nothing when the vendored versions already match
# (set FORCE=1 to re-fetch).
set -euo pipefail

MATHJAX_VERSION=3.2.2
FONT_AWESOME_VERSION=4.7.0    # the 4.x icon names used by matplotlib's jshtml controls
VEGA_VERSION=5.33.1
VEGA_LITE_VERSION=5.23.0
VEGA_EMBED_VERSION=6.29.0

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/book/_static/vendor"
STAMP="$VENDOR/VERSIONS"
WANT="mathjax@$MATHJAX_VERSION font-awesome@$FONT_AWESOME_VERSION vega@$VEGA_VERSION vega-lite@$VEGA_LITE_VERSION vega-embed@$VEGA_EMBED_VERSION"

if [[ "${FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
    echo "fetch_site_assets: $VENDOR is up to date ($WANT)"
    exit 0
fi

command -v npm >/dev/null || { echo "fetch_site_assets: npm is required (node >= 18)" >&2; exit 1; }

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "fetch_site_assets: npm install $WANT"
# --ignore-scripts: nothing needs building, we only copy files out of the packages.
npm install --prefix "$TMP" --no-save --no-audit --no-fund --no-package-lock --ignore-scripts \
    --loglevel=error $WANT
NM="$TMP/node_modules"

rm -rf "$VENDOR"
mkdir -p "$VENDOR"

# MathJax 3: the combined component Sphinx loads, plus the directories it loads lazily
# (TeX extensions via autoload/\require, CHTML fonts, the context menu, a11y/speech).
mkdir -p "$VENDOR/mathjax"
cp "$NM/mathjax/es5/tex-mml-chtml.js" "$VENDOR/mathjax/"
for d in a11y adaptors input output sre ui; do
    [[ -d "$NM/mathjax/es5/$d" ]] && cp -r "$NM/mathjax/es5/$d" "$VENDOR/mathjax/"
done
cp "$NM/mathjax/LICENSE" "$VENDOR/mathjax/"

# Font Awesome 4 (css/ + fonts/, the layout its CSS expects)
mkdir -p "$VENDOR/font-awesome/css"
cp "$NM/font-awesome/css/font-awesome.min.css" "$VENDOR/font-awesome/css/"
cp -r "$NM/font-awesome/fonts" "$VENDOR/font-awesome/"

# Vega, Vega-Lite and vega-embed: the minified browser builds the explorer loads, with their licences
mkdir -p "$VENDOR/vega"
for p in vega vega-lite vega-embed; do
    cp "$NM/$p/build/$p.min.js" "$VENDOR/vega/"
    # vega's npm package ships no LICENSE file (BSD-3-Clause, as its package.json says); the others do
    if [[ -f "$NM/$p/LICENSE" ]]; then cp "$NM/$p/LICENSE" "$VENDOR/vega/LICENSE-$p"; fi
    grep -o '"license": *"[^"]*"' "$NM/$p/package.json" > "$VENDOR/vega/LICENSE-$p.spdx"
done

# Sanity checks: every file the config references exists.
for f in mathjax/tex-mml-chtml.js mathjax/output/chtml/fonts/woff-v2 \
         font-awesome/css/font-awesome.min.css font-awesome/fonts/fontawesome-webfont.woff2 \
         vega/vega.min.js vega/vega-lite.min.js vega/vega-embed.min.js; do
    [[ -e "$VENDOR/$f" ]] || { echo "fetch_site_assets: missing $VENDOR/$f" >&2; exit 1; }
done

echo "$WANT" > "$STAMP"
echo "fetch_site_assets: vendored into $VENDOR ($(du -sh "$VENDOR" | cut -f1))"
