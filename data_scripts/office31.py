"""Office-31 (Saenko et al. 2010): amazon / dslr / webcam, 31 classes, 4,110 images
(2,817 / 498 / 795; any other count is an error).  Split: the 60/20/20 lists the RLW
authors published in LibMTL (default; see ``_office.py``) or ``--split random``.

Download: Google Drive (``domain_adaptation_images.tar.gz``; the old link needs its
resource key, passed here) with gdown, the optional ``data`` extra
(``pip install -e '.[data]'``).  Checksum: none is published for the archive; its sha256
is printed and recorded in ``<out>/checksums.json`` once it has been extracted, and
checked later (``--expect-sha256`` pins a value you trust).  The LibMTL lists are checked
against the sha256 pinned below.  If Drive refuses, download the archive by hand and pass
``--archive FILE`` (any file name).  Read by ``mtlkit.data.office.load_office("office31")``.

    python data_scripts/office31.py --out .data
"""

from _office import Domain, Release, prepare

RELEASE = Release(
    name="office31", libmtl_dataset="office-31", file="domain_adaptation_images.tar.gz",
    drive_id="0B4IapRTv9pJ1WGZVd1VDMmhwdlE", resource_key="0-gNMHVtZfRAyO_t2_WrOunA",
    domains=(Domain("amazon", "amazon", "amazon/images", 2817),
             Domain("dslr", "dslr", "dslr/images", 498),
             Domain("webcam", "webcam", "webcam/images", 795)),
    list_sha256={
        "amazon_test.txt": "13429a0a14d8e35d09367d4c7980b4709c1edfc19d49b5052d44be3b0cc88a02",
        "amazon_train.txt": "aef55224b4fad05355311f6c66756d550a484e678ac03ac593e90431661b729f",
        "amazon_val.txt": "e171e1f51660af864c9f6c81d42003ce49a91c1bfd6217301cd96eb59653ab05",
        "dslr_test.txt": "b4769a765a31083bc6cc1b4349d91fd46e6e85d5e53311619cf8360ce7c7fdc8",
        "dslr_train.txt": "c669f2636d27bf2ad9b5f841f2e27747c264041d8ab9a2c0cda8225b707df6d1",
        "dslr_val.txt": "b4e3fec9c8a08097278ed3e888c7d6e1672b124395707272908cb9b080d54169",
        "webcam_test.txt": "5e0cd750cb090a7684584ed17d34d503fa6302e4db1db0e8f1f20f62f89d5998",
        "webcam_train.txt": "117417addef21e79d48266e95290f5914c5ebd7b637c511e67d9acceeb038715",
        "webcam_val.txt": "dedd7e53fd5ebadc434cd1e377b60ac5978d628a208b0ec791063d01bfe54982",
    })


def main(argv: list[str] | None = None) -> None:
    prepare(__doc__, RELEASE, argv)


if __name__ == "__main__":
    main()
