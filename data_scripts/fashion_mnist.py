"""Fashion-MNIST's four IDX ``.gz`` files (Xiao et al. 2017) for MultiFashion.

Offline alternative: ``bash scripts/get_fashion_mnist.sh`` (Debian's
dataset-fashion-mnist).  Source: the files in the Fashion-MNIST repository, over HTTPS
(the S3 website mirror torchvision uses offers plain HTTP only).  Checksum: the md5
values published in the Fashion-MNIST README (and pinned by torchvision) are checked
before a file is kept.  The files are read by ``mtlkit.data.multimnist.load_fashion``.

    python data_scripts/fashion_mnist.py --out .data/fashion-mnist
"""

from __future__ import annotations

import shutil
from pathlib import Path

from _common import fetch, parse, parser

BASE = "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/"
MD5 = {"train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
       "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
       "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
       "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__, list(MD5))
    p.set_defaults(out=Path(__file__).resolve().parents[1] / ".data" / "fashion-mnist")
    args = parse(p, argv)
    args.raw = args.out  # the loader reads the .gz files where they are downloaded
    for name, md5 in MD5.items():
        got = fetch(BASE + name, name, args, md5_hex=md5)
        if got.path != args.out / name:  # given with --archive: put it where it is read
            shutil.copy2(got.path, args.out / name)
    from mtlkit.data.multimnist import load_fashion

    data = load_fashion(str(args.out), cache=False)
    print(f"ok: {len(data['train'][0])} train / {len(data['test'][0])} test images in {args.out}")


if __name__ == "__main__":
    main()
