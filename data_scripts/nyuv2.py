"""NYUv2 as preprocessed by MTAN (Liu et al. 2019): 13-class segmentation, depth and
normals at 288 x 384; exactly 795 train / 654 val ``.npy`` samples (any other count is an
error, and nothing of an earlier run is kept).

Checksum: Dropbox shares publish none; the archive's sha256 is printed and recorded in
``<out>/checksums.json`` once it has been extracted, and checked on later runs
(``--expect-sha256`` pins a value you trust).  The prepared tree gets a MANIFEST.json
that ``mtlkit.data.nyuv2.load_nyuv2`` verifies.  If the link has moved, download the
folder by hand and pass ``--archive FILE`` (any file name).

    python data_scripts/nyuv2.py --out .data
"""

from _dense import prepare

URL = "https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=1"
FILE = "nyuv2.zip"
FOLDERS = ["image", "label", "depth", "normal"]
COUNTS = {"train": 795, "val": 654}


def main(argv: list[str] | None = None) -> None:
    prepare(__doc__, "nyuv2", URL, FILE, FOLDERS, COUNTS, argv)


if __name__ == "__main__":
    main()
