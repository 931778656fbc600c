#!/usr/bin/env bash
# Installs what SMAC/SMACv2 need on a Linux node: the headless StarCraft II build, the SMAC maps,
# SMACv2's 32x32_flat map, and oxwhirl's `smac` and `smacv2` packages (from GitHub: PyPI's `smac`
# is SMAC3, an unrelated optimizer). Idempotent: every piece already in place is skipped, so it
# can run in every node's setup commands.
#
#   bash cluster/install_sc2.sh                         # into ~/StarCraftII, SC2 4.10
#   SC2PATH=/data/StarCraftII SC2_VERSION=4.10 bash cluster/install_sc2.sh
#
# Environment: SC2PATH (install dir; pysc2 reads the same variable, default ~/StarCraftII),
# SC2_VERSION (Blizzard's Linux package version, default 4.10: SMACv2's, MAPPO's and HARL's; the SMAC
# paper used 4.6.2, whose results differ from later versions),
# PYTHON (the interpreter whose pip installs smac/smacv2, default python), SKIP_PIP=1 (game and
# maps only).
#
# Unzipping the game with the password "iagreetotheeula" accepts Blizzard's StarCraft II AI and
# Machine Learning License: https://blzdistsc2-a.akamaihd.net/AI_AND_MACHINE_LEARNING_LICENSE.html
#
# Note: smac and smacv2 pin protobuf<3.21, so pip moves protobuf to 3.20.x (Ray accepts >=3.20.3).
set -euo pipefail

SC2PATH="${SC2PATH:-$HOME/StarCraftII}"
SC2_VERSION="${SC2_VERSION:-4.10}"
PYTHON="${PYTHON:-python}"
SKIP_PIP="${SKIP_PIP:-0}"

SC2_URL="http://blzdistsc2-a.akamaihd.net/Linux/SC2.${SC2_VERSION}.zip"
SMAC_MAPS_URL="https://github.com/oxwhirl/smac/releases/download/v0.1-beta1/SMAC_Maps.zip"
SMACV2_MAPS_URL="https://github.com/oxwhirl/smacv2/releases/download/maps/SMAC_Maps.zip"
SMACV2_MAP_URL="https://raw.githubusercontent.com/oxwhirl/smacv2/main/smacv2/env/starcraft2/maps/SMAC_Maps/32x32_flat.SC2Map"
SMAC_GIT="git+https://github.com/oxwhirl/smac.git"
SMACV2_GIT="git+https://github.com/oxwhirl/smacv2.git"

log() { echo "[install_sc2] $*"; }
die() {
    echo "[install_sc2] error: $*" >&2
    exit 1
}

download() { # url file
    if command -v wget >/dev/null 2>&1; then
        wget -q -O "$2" "$1"
    elif command -v curl >/dev/null 2>&1; then
        curl -fsSL -o "$2" "$1"
    else
        die "needs wget or curl (apt-get install -y wget)"
    fi
}

command -v unzip >/dev/null 2>&1 || die "needs unzip (apt-get install -y unzip)"

# Scratch space next to the install, so the multi-GB game moves into place by a rename.
SC2PATH="$(mkdir -p "$(dirname "$SC2PATH")" && cd "$(dirname "$SC2PATH")" && pwd)/$(basename "$SC2PATH")"
tmp="$(mktemp -d "$(dirname "$SC2PATH")/.install_sc2.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# ---- 1. StarCraft II ----
if [ -d "$SC2PATH/Versions" ]; then
    log "StarCraft II already at $SC2PATH"
else
    if [ -e "$SC2PATH" ] && [ -n "$(ls -A "$SC2PATH" 2>/dev/null)" ]; then
        die "$SC2PATH exists but holds no StarCraft II (no Versions/); move it away or set SC2PATH"
    fi
    log "downloading StarCraft II ${SC2_VERSION} (several GB) from $SC2_URL"
    download "$SC2_URL" "$tmp/sc2.zip"
    log "unpacking (accepting Blizzard's AI and Machine Learning License)"
    unzip -q -P iagreetotheeula "$tmp/sc2.zip" -d "$tmp/sc2"
    rm -f "$tmp/sc2.zip"
    versions="$(find "$tmp/sc2" -maxdepth 3 -type d -name Versions | head -n 1)"
    [ -n "$versions" ] || die "no Versions/ directory in $SC2_URL"
    rmdir "$SC2PATH" 2>/dev/null || true
    mv "$(dirname "$versions")" "$SC2PATH"
    log "StarCraft II installed at $SC2PATH"
fi

# ---- 2. maps (into $SC2PATH/Maps/SMAC_Maps, where SMAC's map registry looks) ----
maps="$SC2PATH/Maps/SMAC_Maps"
mkdir -p "$maps"

copy_maps() { # zip: copy its .SC2Map files that are not there yet
    rm -rf "$tmp/maps" && mkdir -p "$tmp/maps"
    unzip -q -o "$1" -d "$tmp/maps"
    find "$tmp/maps" -name '*.SC2Map' -print0 | while IFS= read -r -d '' map; do
        [ -e "$maps/$(basename "$map")" ] || cp "$map" "$maps/"
    done
}

if [ -f "$maps/3m.SC2Map" ] && [ -f "$maps/corridor.SC2Map" ] && [ -f "$maps/27m_vs_30m.SC2Map" ]; then
    log "SMAC maps already in $maps"
else
    log "downloading the SMAC maps"
    download "$SMAC_MAPS_URL" "$tmp/smac_maps.zip"
    copy_maps "$tmp/smac_maps.zip"
fi

if [ -f "$maps/32x32_flat.SC2Map" ]; then
    log "SMACv2 map already in $maps"
else
    log "downloading the SMACv2 maps"
    if download "$SMACV2_MAPS_URL" "$tmp/smacv2_maps.zip" && copy_maps "$tmp/smacv2_maps.zip" \
        && [ -f "$maps/32x32_flat.SC2Map" ]; then
        :
    else
        log "release zip unavailable; fetching 32x32_flat.SC2Map from the smacv2 repository"
        download "$SMACV2_MAP_URL" "$maps/32x32_flat.SC2Map"
    fi
fi

# ---- 3. oxwhirl's smac and smacv2 ----
if [ "$SKIP_PIP" = 1 ]; then
    log "SKIP_PIP=1: not installing smac/smacv2"
else
    if "$PYTHON" -c "import smac.env" >/dev/null 2>&1; then
        log "smac (oxwhirl) already installed"
    else
        if "$PYTHON" -c "import smac" >/dev/null 2>&1; then
            log "the installed 'smac' has no smac.env (SMAC3, the optimizer?): replacing it with oxwhirl's"
        fi
        "$PYTHON" -m pip install "$SMAC_GIT"
    fi
    if "$PYTHON" -c "import smacv2.env" >/dev/null 2>&1; then
        log "smacv2 already installed"
    else
        "$PYTHON" -m pip install "$SMACV2_GIT"
    fi
fi

if [ "$SC2PATH" != "$HOME/StarCraftII" ]; then
    log "done. pysc2 finds the game through:  export SC2PATH=$SC2PATH"
else
    log "done."
fi
