"""Office-31 (Saenko et al. 2010): amazon / dslr / webcam, 31 classes, 4,110 images;
60/20/20 stratified split (seed 0) written once into split lists.

Download: Google Drive (``domain_adaptation_images.tar.gz``); no checksum is published,
so the sha256 is recorded in ``<out>/checksums.json`` on first download and checked
later.  If Drive refuses, download it by hand and pass ``--archive <file>``.  Read by
``mtlkit.data.office.load_office("office31")``.

    python data_scripts/office31.py --out .data
"""

from _office import prepare

if __name__ == "__main__":
    prepare(__doc__, "office31", "0B4IapRTv9pJ1WGZVd1VDMmhwdlE",
            "domain_adaptation_images.tar.gz",
            {"amazon": "**/amazon/images", "dslr": "**/dslr/images",
             "webcam": "**/webcam/images"})
