#!/usr/bin/env bash
# Re-fetches the GraphiQL page's third-party files into assets/graphiql/ from the npm
# registry. The binary embeds them (src/server/graphiql.rs), so neither building nor
# serving needs the network; this script is the only step that does.
#
# The versions are pinned here and listed in assets/graphiql/VERSIONS. To upgrade, change
# them below, run this script, and run the browser test (tests/e2e): the UMD globals the
# page's init.js relies on (React, ReactDOM, GraphiQL, GraphiQLPluginExplorer) must match.
#
# Needs npm and tar. `npm pack` checks each tarball against the registry's integrity hash.
set -euo pipefail
cd "$(dirname "$0")/.."

# GraphiQL 3.x is the last line that ships a UMD bundle meant for a plain <script> tag
# (4.x deprecates it, 5.x drops it); the bundle includes @graphiql/react, graphql and the
# graphql-ws client, so no other package is needed for subscriptions.
GRAPHIQL=3.9.0
# The explorer plugin's peer dependency is @graphiql/react ^0.29, the one GraphiQL 3.9.0
# bundles; its UMD build reads React from window.React and the rest from window.GraphiQL.
PLUGIN_EXPLORER=3.2.6
# GraphiQL 3 supports React 16.8 to 18; React 18 is the last with UMD builds.
REACT=18.3.1

dest=assets/graphiql
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # package version -> prints the directory the tarball was unpacked in
    local package=$1 version=$2 dir
    dir="$work/$(echo "$package" | tr '/@' '__')"
    mkdir -p "$dir"
    (cd "$dir" && npm pack --silent "$package@$version" >/dev/null && tar xzf ./*.tgz)
    echo "$dir/package"
}

graphiql=$(fetch graphiql "$GRAPHIQL")
explorer=$(fetch @graphiql/plugin-explorer "$PLUGIN_EXPLORER")
react=$(fetch react "$REACT")
react_dom=$(fetch react-dom "$REACT")

cp "$graphiql/graphiql.min.js" "$graphiql/graphiql.min.css" "$dest/"
cp "$explorer/dist/index.umd.js" "$dest/plugin-explorer.umd.js"
cp "$explorer/dist/style.css" "$dest/plugin-explorer.css"
cp "$react/umd/react.production.min.js" "$react_dom/umd/react-dom.production.min.js" "$dest/"

mkdir -p "$dest/licenses"
cp "$graphiql/LICENSE" "$dest/licenses/graphiql.LICENSE"
cp "$react/LICENSE" "$dest/licenses/react.LICENSE"
cp "$react_dom/LICENSE" "$dest/licenses/react-dom.LICENSE"
# The plugin's tarball has no LICENSE file; its package.json says MIT, and it comes from
# the same repository (graphql/graphiql) under the same license as graphiql.
if [ -f "$explorer/LICENSE" ]; then
    cp "$explorer/LICENSE" "$dest/licenses/graphiql-plugin-explorer.LICENSE"
else
    license=$(node -p "require('$explorer/package.json').license")
    [ "$license" = MIT ] || { echo "unexpected license $license" >&2; exit 1; }
    cp "$graphiql/LICENSE" "$dest/licenses/graphiql-plugin-explorer.LICENSE"
fi

cat > "$dest/VERSIONS" <<VERSIONS
# Written by scripts/refresh-graphiql.sh; package, exact version, files taken.
graphiql $GRAPHIQL graphiql.min.js graphiql.min.css
@graphiql/plugin-explorer $PLUGIN_EXPLORER dist/index.umd.js -> plugin-explorer.umd.js, dist/style.css -> plugin-explorer.css
react $REACT umd/react.production.min.js
react-dom $REACT umd/react-dom.production.min.js
VERSIONS

echo "refreshed $dest:"
ls -l "$dest"
