"""Cityscapes as preprocessed by MTAN: 7-class segmentation and depth at 128 x 256;
exactly 2,975 train / 500 val ``.npy`` samples (the 651 MB release; any other count is
an error, and nothing of an earlier run is kept).

Checksum: none published; the sha256 is printed and recorded in ``<out>/checksums.json``
once the archive has been extracted, and checked on later runs (``--expect-sha256`` pins
a value you trust); MANIFEST.json for the loader
(``mtlkit.data.cityscapes.load_cityscapes``).  Manual route: ``--archive FILE`` (any
file name).

    python data_scripts/cityscapes.py --out .data
"""

from _dense import prepare

URL = "https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=1"
FILE = "cityscapes.zip"
FOLDERS = ["image", "label_7", "depth"]
COUNTS = {"train": 2975, "val": 500}


def main(argv: list[str] | None = None) -> None:
    prepare(__doc__, "cityscapes", URL, FILE, FOLDERS, COUNTS, argv)


if __name__ == "__main__":
    main()
