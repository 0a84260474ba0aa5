#!/usr/bin/env bash
# Renders the PWA's PNG icons from www/icon.svg with headless Chromium (the app's manifest needs
# 192 and 512 px icons and a maskable one). The PNGs are committed; run this after changing the SVG.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
svg=$(base64 -w0 www/icon.svg)
render() { # size, html body, output
  printf '<!doctype html><html><body style="margin:0;background:transparent">%s</body></html>' "$2" > "$tmp/page.html"
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --default-background-color=00000000 \
    --window-size="$1,$1" --screenshot="$3" "file://$tmp/page.html" >/dev/null 2>&1
}
for s in 192 512; do
  render "$s" "<img src=\"data:image/svg+xml;base64,$svg\" width=\"$s\" height=\"$s\" style=\"display:block\">" "www/icon-$s.png"
done
# Maskable: the claw within the safe zone (the inner 80% circle) on a full-bleed background.
render 512 "<div style=\"width:512px;height:512px;background:linear-gradient(135deg,#f2744f,#c23a22);display:grid;place-items:center\"><img src=\"data:image/svg+xml;base64,$svg\" width=\"330\" height=\"330\"></div>" www/icon-maskable-512.png
ls -l www/icon-*.png
