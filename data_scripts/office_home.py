"""Office-Home (Venkateswara et al. 2017): Art / Clipart / Product / Real World, 65
classes, 15,500 images; 60/20/20 stratified split (seed 0) written into split lists.

Download: Google Drive (``OfficeHomeDataset_10072016.zip``); no published checksum, so
the sha256 is recorded in ``<out>/checksums.json`` on first download and checked later.
If Drive refuses, download by hand and pass ``--archive <file>``.  Read by
``mtlkit.data.office.load_office("office_home")``.

    python data_scripts/office_home.py --out .data
"""

from _office import prepare

if __name__ == "__main__":
    prepare(__doc__, "office_home", "0B81rNlvomiwed0V1YUxQdC1uOTg",
            "OfficeHomeDataset_10072016.zip",
            {"art": "**/Art", "clipart": "**/Clipart", "product": "**/Product",
             "real_world": "**/Real World"})
