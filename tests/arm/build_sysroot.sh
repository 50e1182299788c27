#!/usr/bin/env bash
# Build (or reuse) a Raspberry-Pi-OS-Bookworm-like ARM userland to run edgecam under qemu-user.
#
#   tests/arm/build_sysroot.sh [aarch64|armv7l]      -> prints the ready directory on stdout
#
# Pi OS Bookworm is Debian 12 plus a few packages: glibc 2.36, Python 3.11. The sysroot is made
# of Debian's own ARM packages (python3.11 and its libraries, plus numpy/OpenCV from Debian on
# armv7l, where PyPI has no wheels), unpacked with `dpkg -x` and WITHOUT touching this machine's
# apt configuration (apt runs with private state/cache dirs and an ARM architecture override).
# PyPI wheels for cp311 go into site/ via `pip install --target --platform --only-binary`.
#
# Result, in $EDGECAM_ARM_CACHE (default ~/.cache/edgecam-arm64)/<arch>-<key>/:
#   sysroot/                     the ARM root file system (qemu -L)
#   sysroot/usr/bin/python3      a host shell script: qemu + the ARM python3.11. It lives INSIDE
#                                the sysroot so Python finds its prefix there (not the host's
#                                /usr/lib/python3 with x86 extension modules), and so
#                                sys.executable is something the kernel can exec without
#                                binfmt_misc: edgecam's runtime probe re-runs sys.executable.
#   site/                        the ARM wheels (put on PYTHONPATH by the wrapper)
# <key> hashes the Debian package list, the wheel list and this script's recipe version, so a
# change to either builds a new directory and an unchanged list is reused (a rerun takes < 1 s).
set -euo pipefail

RECIPE=4 # bump when the build steps change in a way the lists below do not show
ARCH="${1:-aarch64}"
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
HOST_PY="${EDGECAM_HOST_PYTHON:-$REPO/.venv/bin/python}"
CACHE_ROOT="${EDGECAM_ARM_CACHE:-$HOME/.cache/edgecam-arm64}"
PY_PLATFORMS=()

case "$ARCH" in
aarch64)
    DEB_ARCH=arm64
    QEMU=qemu-aarch64-static
    DEB_ROOTS="python3.11 libstdc++6"
    for tag in manylinux_2_34 manylinux_2_28 manylinux_2_27 manylinux_2_17 manylinux2014; do
        PY_PLATFORMS+=(--platform "${tag}_aarch64")
    done
    # Versions the x86 venv has (and NOTES.md describes): the emulated run compares against it.
    WHEELS="numpy==1.26.4 tflite-runtime==2.14.0 ai-edge-litert==2.3.0"
    WHEELS="$WHEELS opencv-python-headless==4.11.0.86 pydantic>=2.5,<3 paho-mqtt>=2,<3"
    WHEELS="$WHEELS tflite>=2.10 tqdm>=4.60 imagesize>=2.0 orjson>=3.9 prometheus-client>=0.17"
    NO_DEPS=""
    ;;
armv7l)
    DEB_ARCH=armhf
    QEMU=qemu-arm-static
    # 32-bit Pi OS: no numpy<2 / OpenCV wheels on PyPI, so Debian's (python3-numpy 1.24,
    # python3-opencv 4.6), exactly as a --system-site-packages venv on the Pi would use them.
    DEB_ROOTS="python3.11 libstdc++6 python3-numpy python3-opencv"
    for tag in manylinux_2_34 manylinux_2_31 manylinux_2_28 manylinux_2_17 manylinux2014; do
        PY_PLATFORMS+=(--platform "${tag}_armv7l")
    done
    # --no-deps (numpy comes from Debian), so every dependency is listed.
    WHEELS="tflite-runtime==2.14.0 pydantic>=2.5,<3 pydantic-core annotated-types"
    WHEELS="$WHEELS typing-extensions typing-inspection paho-mqtt>=2,<3 tflite>=2.10"
    WHEELS="$WHEELS flatbuffers tqdm>=4.60 imagesize>=2.0 orjson>=3.9 prometheus-client>=0.17"
    NO_DEPS="--no-deps"
    ;;
*)
    echo "usage: $0 [aarch64|armv7l]" >&2
    exit 2
    ;;
esac

command -v "$QEMU" >/dev/null || {
    echo "FATAL: $QEMU not found: apt-get install qemu-user-static" >&2
    exit 1
}
[ -x "$HOST_PY" ] || {
    echo "FATAL: no host python with pip at $HOST_PY (set EDGECAM_HOST_PYTHON)" >&2
    exit 1
}

KEY="$(printf '%s\n' "$RECIPE" "$ARCH" "$DEB_ROOTS" "$WHEELS" "$NO_DEPS" "${PY_PLATFORMS[*]}" |
    sha256sum | cut -c1-16)"
OUT="$CACHE_ROOT/$ARCH-$KEY"
if [ -f "$OUT/.complete" ]; then
    echo "$OUT"
    exit 0
fi

mkdir -p "$CACHE_ROOT"
WORK="$(mktemp -d "$CACHE_ROOT/.build-$ARCH.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
log() { echo "[build_sysroot $ARCH] $*" >&2; }

# --- Debian packages, with private apt state (the host's sources, the ARM architecture) ------
APT="$WORK/apt"
mkdir -p "$APT/lists/partial" "$APT/cache/archives/partial" "$WORK/debs" "$WORK/sysroot"
O=(-o "Dir::State::Lists=$APT/lists" -o "Dir::Cache=$APT/cache" -o "Dir::State::Status=/dev/null"
    -o "APT::Architecture=$DEB_ARCH" -o "APT::Architectures::=$DEB_ARCH"
    -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
log "apt-get update ($DEB_ARCH)"
# A mirror mid-sync fails one index (seen: bookworm-security armhf); the others still serve.
apt-get "${O[@]}" update -qq >&2 || log "apt-get update reported errors; using the indexes it got"
# The closure of the roots' Depends (no Recommends); dpkg/perl/debconf are maintainer-script
# tooling, useless in an unpacked tree.
# shellcheck disable=SC2086
PKGS="$(apt-cache "${O[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances --no-pre-depends $DEB_ROOTS |
    grep -v '^ ' | grep -v '<' | sort -u |
    grep -v -E '^(dpkg|perl.*|libperl.*|install-info|tar|debconf.*|python3-pil|python3-pil.tk)$' |
    sed "s/:$DEB_ARCH\$//")"
log "apt-get download $(echo "$PKGS" | wc -l) packages"
# shellcheck disable=SC2086
(cd "$WORK/debs" && apt-get "${O[@]}" download -qq $PKGS >&2)
for deb in "$WORK"/debs/*.deb; do
    dpkg -x "$deb" "$WORK/sysroot"
done
# update-alternatives links that maintainer scripts would make (numpy needs libblas.so.3).
for lib in libblas.so.3 liblapack.so.3; do
    for dir in "$WORK"/sysroot/usr/lib/*-linux-gnu*; do
        [ -e "$dir/$lib" ] && continue
        # Reference BLAS first: OpenBLAS would also need its directory in ld.so.cache.
        for impl in blas lapack openblas-pthread; do
            if [ -e "$dir/$impl/$lib" ]; then
                ln -s "$impl/$lib" "$dir/$lib"
                if [ "$impl" = openblas-pthread ] && [ ! -e "$dir/libopenblas.so.0" ]; then
                    ln -s "$impl/libopenblas.so.0" "$dir/libopenblas.so.0"
                fi
                break
            fi
        done
    done
done

# --- PyPI wheels for cp311 on this architecture ----------------------------------------------
log "pip install --target site ($WHEELS)"
# shellcheck disable=SC2086
"$HOST_PY" -m pip install -q --disable-pip-version-check --no-compile --target "$WORK/site" \
    "${PY_PLATFORMS[@]}" --only-binary=:all: --python-version 3.11 --implementation cp \
    $NO_DEPS $WHEELS >&2

# --- the exec wrapper (see the header) ------------------------------------------------------
mkdir -p "$WORK/sysroot/usr/lib/python3/dist-packages"
cat >"$WORK/sysroot/usr/bin/python3" <<EOF
#!/bin/sh
# Runs the $ARCH python3.11 of this sysroot under $QEMU (written by tests/arm/build_sysroot.sh).
root=\$(cd "\$(dirname "\$0")/../.." && pwd)
PYTHONPATH="\${PYTHONPATH:+\$PYTHONPATH:}\$root/../site"
export PYTHONPATH
exec $QEMU -L "\$root" -0 "\$0" "\$root/usr/bin/python3.11" "\$@"
EOF
chmod +x "$WORK/sysroot/usr/bin/python3"
rm -rf "$WORK/apt" "$WORK/debs"
printf '%s\n' "arch=$ARCH" "debian_roots=$DEB_ROOTS" "wheels=$WHEELS" "$PKGS" >"$WORK/MANIFEST"

log "smoke test"
"$WORK/sysroot/usr/bin/python3" -c 'import platform, numpy, tflite_runtime.interpreter, cv2' >&2

rm -rf "$OUT"
mkdir -p "$OUT"
mv "$WORK/sysroot" "$WORK/site" "$WORK/MANIFEST" "$OUT/"
touch "$OUT/.complete"
echo "$OUT"
