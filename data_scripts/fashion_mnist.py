"""Fashion-MNIST's four IDX ``.gz`` files (Xiao et al. 2017) for MultiFashion.

Offline alternative: ``bash scripts/get_fashion_mnist.sh`` (Debian's
dataset-fashion-mnist).  Checksum: the md5 values published in the Fashion-MNIST README
are checked, and the sha256 is recorded in ``<dest>/checksums.json`` on first download.
The files are read by ``mtlkit.data.multimnist.load_fashion``.

    python data_scripts/fashion_mnist.py --out .data/fashion-mnist
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from _common import fetch, parser

BASE = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
MD5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
       "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
       "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
       "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}


def main() -> None:
    p = parser(__doc__)
    p.set_defaults(out=Path(__file__).resolve().parents[1] / ".data" / "fashion-mnist")
    args = p.parse_args()
    args.raw = args.raw or args.out
    for name, md5 in MD5.items():
        path = fetch(BASE + name, name, args)
        if hashlib.md5(path.read_bytes()).hexdigest() != md5:
            raise SystemExit(f"{path}: md5 differs from the published {md5}; delete and retry")
    from mtlkit.data.multimnist import load_fashion

    data = load_fashion(str(args.out))
    print(f"ok: {len(data['train'][0])} train / {len(data['test'][0])} test images in {args.out}")


if __name__ == "__main__":
    main()
