#!/usr/bin/env bash
# Install edgecam on Raspberry Pi OS (Bookworm or newer; 64-bit or 32-bit) and start it on boot.
#
#   sudo systemd/install-pi.sh              # do it
#   systemd/install-pi.sh --dry-run         # print the plan, change nothing (no root needed)
#
# Steps, each skipped when already done, so running it again is safe:
#   1. apt: python3-venv, python3-picamera2 (the Pi camera; only Raspberry Pi OS ships its
#      libcamera bindings); on 32-bit also python3-numpy + python3-opencv (no PyPI wheels)
#   2. a venv at /opt/edgecam/venv WITH --system-site-packages, so it sees picamera2 from apt
#   3. pip install edgecam (+ the tflite-runtime fallback where a wheel exists: Python <= 3.11)
#   4. edgecam models fetch (the default detector and classifier) into /var/lib/edgecam/models
#   5. edgecam doctor: stops here if a check fails (--force goes on anyway)
#   6. edgecam service install: the systemd unit, /etc/edgecam/edgecam.toml, enable --now
#
# Options:
#   --dry-run            print the plan only
#   --source SPEC        what pip installs: a path, wheel, sdist or VCS URL (default: this
#                        checkout if the script is in one, else $EDGECAM_SOURCE; edgecam is
#                        not on a package index yet, so there is no further default)
#   --venv DIR           default /opt/edgecam/venv (not under /home: the unit hides /home)
#   --models "A B"       manifest names to fetch (default: "ssd_mobilenet_v1 mobilenet_v2")
#   --models-from DIR    copy the model files from DIR instead of downloading them
#   --no-service         stop after the doctor
#   --force              go on after a failed doctor check
# Planning for another board (only with --dry-run):
#   --arch aarch64|armv7l  --os-release FILE  --python-version X.Y
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
DRY_RUN=0
FORCE=0
SERVICE=1
VENV=/opt/edgecam/venv
MODELS="ssd_mobilenet_v1 mobilenet_v2"
MODELS_DIR=/var/lib/edgecam/models
MODELS_FROM=""
SOURCE=""
ARCH=""
OS_RELEASE=/etc/os-release
PY_VERSION=""
PLANNING=0

die() {
    echo "install-pi: error: $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --force) FORCE=1 ;;
    --no-service) SERVICE=0 ;;
    --source) SOURCE="${2:?--source needs a value}"; shift ;;
    --venv) VENV="${2:?--venv needs a directory}"; shift ;;
    --models) MODELS="${2:?--models needs names}"; shift ;;
    --models-from) MODELS_FROM="${2:?--models-from needs a directory}"; shift ;;
    --arch) ARCH="${2:?--arch needs a value}"; PLANNING=1; shift ;;
    --os-release) OS_RELEASE="${2:?--os-release needs a file}"; PLANNING=1; shift ;;
    --python-version) PY_VERSION="${2:?--python-version needs X.Y}"; PLANNING=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed 's/^# \{0,1\}//; /^set -euo/d'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

[ "$PLANNING" = 0 ] || [ "$DRY_RUN" = 1 ] || die "--arch/--os-release/--python-version only plan: add --dry-run"
if [ "$DRY_RUN" = 0 ] && [ "$(id -u)" != 0 ]; then
    die "this installs system packages and a service: run it with sudo (or use --dry-run)"
fi
case "$VENV" in /home/* | /root/*) die "--venv $VENV: the service cannot see /home or /root (ProtectHome=yes)" ;; esac

# --- what are we on ------------------------------------------------------------------------
ARCH="${ARCH:-$(uname -m)}"
[ -r "$OS_RELEASE" ] || die "$OS_RELEASE not readable"
# shellcheck source=/dev/null
OS_NAME="$(. "$OS_RELEASE" && echo "${PRETTY_NAME:-${NAME:-unknown}}")"
# shellcheck source=/dev/null
CODENAME="$(. "$OS_RELEASE" && echo "${VERSION_CODENAME:-}")"
PY_VERSION="${PY_VERSION:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}"
case "$CODENAME" in buster | bullseye)
    die "$OS_NAME is too old: tflite-runtime needs glibc >= 2.34 (Raspberry Pi OS Bookworm or newer)" ;;
esac
case "$ARCH" in
aarch64 | armv7l | x86_64) ;;
armv6l) die "armv6 (Pi Zero / Pi 1): no TFLite runtime publishes wheels for it" ;;
*) die "unsupported machine $ARCH" ;;
esac
if [ -z "$SOURCE" ]; then
    if [ -f "$HERE/../pyproject.toml" ]; then
        SOURCE="$(cd "$HERE/.." && pwd)"
    elif [ -n "${EDGECAM_SOURCE:-}" ]; then
        SOURCE="$EDGECAM_SOURCE"
    else
        die "not run from a checkout: pass --source (a path, wheel or sdist of edgecam) or set EDGECAM_SOURCE; edgecam is not on a package index yet"
    fi
fi
# tflite-runtime (the fallback interpreter, and the only one for 32-bit) has cp311 wheels at most.
if [ "${PY_VERSION#3.}" -le 11 ]; then SPEC="${SOURCE}[tflite]"; else SPEC="$SOURCE"; fi
[ "$ARCH" = armv7l ] && [ "${PY_VERSION#3.}" -gt 11 ] &&
    die "32-bit with Python $PY_VERSION: no TFLite runtime has wheels for it (use 64-bit Pi OS)"

STEP=0
TOTAL=$((5 + SERVICE))
step() { STEP=$((STEP + 1)); printf '[%d/%d] %s: %s\n' "$STEP" "$TOTAL" "$1" "$2"; }
run() {
    # Print the command (shell-quoted, ready to paste); run it unless this is a dry run.
    if [ "$DRY_RUN" = 1 ]; then printf '      would run:'; else printf '      running:'; fi
    printf ' %q' "$@"
    printf '\n'
    [ "$DRY_RUN" = 1 ] || "$@"
}

if [ "$DRY_RUN" = 1 ]; then echo "edgecam install plan (dry run: nothing is changed)"; fi
echo "platform: $ARCH, $OS_NAME, Python $PY_VERSION"
[ "$ARCH" = x86_64 ] && echo "note: not a Raspberry Pi: the Pi camera (picamera2) will not be found"

# --- 1. apt --------------------------------------------------------------------------------
PACKAGES="python3-venv python3-picamera2"
[ "$ARCH" = armv7l ] && PACKAGES="$PACKAGES python3-numpy python3-opencv"
missing=()
for pkg in $PACKAGES; do
    status="$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)"
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
    step apt "ok, already installed: $PACKAGES"
else
    step apt "install ${missing[*]}"
    run apt-get update
    # --no-install-recommends: picamera2 otherwise pulls the Qt/OpenGL preview stack.
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
fi

# --- 2. venv -------------------------------------------------------------------------------
system_site="$(sed -n 's/^include-system-site-packages *= *//p' "$VENV/pyvenv.cfg" 2>/dev/null || true)"
if [ -x "$VENV/bin/python" ] && [ "$system_site" = true ]; then
    step venv "ok, $VENV exists with --system-site-packages"
elif [ -e "$VENV" ]; then
    step venv "recreate $VENV with --system-site-packages (it cannot see picamera2 from apt)"
    run rm -rf "$VENV"
    run python3 -m venv --system-site-packages "$VENV"
else
    step venv "create $VENV with --system-site-packages (sees picamera2 from apt)"
    run mkdir -p "$(dirname "$VENV")"
    run python3 -m venv --system-site-packages "$VENV"
fi

# --- 3. pip --------------------------------------------------------------------------------
step pip "install $SPEC (already installed parts are kept)"
run "$VENV/bin/python" -m pip install --upgrade "$SPEC"

# --- 4. models -----------------------------------------------------------------------------
step models "fetch $MODELS into $MODELS_DIR (files already there are verified and kept)"
for name in $MODELS; do
    if [ -n "$MODELS_FROM" ]; then
        run "$VENV/bin/edgecam" models fetch "$name" --dest "$MODELS_DIR" --from "$MODELS_FROM"
    else
        run "$VENV/bin/edgecam" models fetch "$name" --dest "$MODELS_DIR"
    fi
done

# --- 5. doctor -----------------------------------------------------------------------------
step doctor "check runtimes, model, camera, broker (probes each runtime in a child process)"
doctor=("$VENV/bin/edgecam" doctor --models-dir "$MODELS_DIR")
[ -f /etc/edgecam/edgecam.toml ] && doctor+=(--config /etc/edgecam/edgecam.toml)
if [ "$DRY_RUN" = 1 ]; then
    run "${doctor[@]}"
elif ! run "${doctor[@]}"; then
    if [ "$FORCE" = 0 ]; then
        echo "install-pi: doctor found failures (see 'fix:' lines above); fix them and run this" \
            "again (it is idempotent), or pass --force" >&2
        exit 1
    fi
    echo "install-pi: continuing despite doctor failures (--force)" >&2
fi

# --- 6. service ----------------------------------------------------------------------------
if [ "$SERVICE" = 1 ]; then
    step service "install and enable the systemd unit (edits go in /etc/edgecam/edgecam.toml)"
    run "$VENV/bin/edgecam" service install
fi

if [ "$DRY_RUN" = 1 ]; then
    echo "dry run: nothing was changed"
else
    echo "done: systemctl status edgecam; journalctl -u edgecam -f"
fi
