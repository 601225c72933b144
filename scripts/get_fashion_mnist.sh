#!/usr/bin/env bash
# Fashion-MNIST from Debian's dataset-fashion-mnist package, unpacked into
# .data/fashion-mnist without root (apt-get download + dpkg-deb -x).
# Never fails the set-up: without apt it says what to do instead.
set -uo pipefail
cd "$(dirname "$0")/.."
DEST=.data/fashion-mnist
SHA=39e172fe32dd318ebb3e512220c3beea2fa47d7e20bab348fb4e0922d6beefc0
if [ -f "$DEST/train-images-idx3-ubyte.gz" ] || [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "fashion-mnist: present"; exit 0
fi
msg="fashion-mnist: not installed; MultiFashion datasets will be unavailable. On Debian/Ubuntu run
  apt-get install dataset-fashion-mnist   (as root), or
  python data_scripts/fashion_mnist.py --out $DEST   (downloads from the internet)"
if ! command -v apt-get >/dev/null || ! command -v dpkg-deb >/dev/null; then
  echo "$msg" >&2; exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if ! (cd "$tmp" && apt-get download -q dataset-fashion-mnist >/dev/null 2>&1); then
  if [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1; then
    (cd "$tmp" && apt-get download -q dataset-fashion-mnist >/dev/null 2>&1) || { echo "$msg" >&2; exit 0; }
  else
    echo "$msg" >&2; exit 0
  fi
fi
deb=$(ls "$tmp"/dataset-fashion-mnist_*.deb)
if [ "$(sha256sum "$deb" | cut -d' ' -f1)" != "$SHA" ]; then
  echo "fashion-mnist: the .deb's sha256 differs from the verified one; not using it" >&2
  echo "$msg" >&2; exit 0
fi
dpkg-deb -x "$deb" "$tmp/x"
mkdir -p "$DEST"
cp "$tmp"/x/usr/share/datasets/fashion-mnist/*.gz "$DEST"/
echo "fashion-mnist: unpacked into $DEST"
