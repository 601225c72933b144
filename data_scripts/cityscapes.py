"""Cityscapes as preprocessed by MTAN: 7-class segmentation and depth at 128 x 256;
2,975 train / 500 val ``.npy`` samples (the 651 MB release).

Checksum: none published; recorded in ``<out>/checksums.json`` on first download and
checked on later runs; MANIFEST.json for the loader
(``mtlkit.data.cityscapes.load_cityscapes``).  Manual route: ``--archive cityscapes.zip``.

    python data_scripts/cityscapes.py --out .data
"""

from _dense import prepare

URL = "https://www.dropbox.com/sh/gaw6vh6qusoyms6/AADwWi0Tp3E3M4B2xzeGlsEna?dl=1"

if __name__ == "__main__":
    prepare(__doc__, "cityscapes", URL, "cityscapes.zip", ["image", "label_7", "depth"],
            {"train": 2975, "val": 500})
