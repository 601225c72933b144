"""NYUv2 as preprocessed by MTAN (Liu et al. 2019): 13-class segmentation, depth and
normals at 288 x 384; 795 train / 654 val ``.npy`` samples.

Checksum: Dropbox shares publish none; the archive's sha256 is recorded in
``<out>/checksums.json`` on first download and checked on later runs.  The prepared tree
gets a MANIFEST.json that ``mtlkit.data.nyuv2.load_nyuv2`` verifies.  If the link has
moved, download the folder by hand and pass ``--archive nyuv2.zip``.

    python data_scripts/nyuv2.py --out .data
"""

from _dense import prepare

URL = "https://www.dropbox.com/sh/86nssgwm6hm3vkb/AACrnUQ4GxpdrBbLjb6n-mWNa?dl=1"

if __name__ == "__main__":
    prepare(__doc__, "nyuv2", URL, "nyuv2.zip", ["image", "label", "depth", "normal"],
            {"train": 795, "val": 654})
