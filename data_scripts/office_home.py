"""Office-Home (Venkateswara et al. 2017): Art / Clipart / Product / Real World, 65
classes, 15,588 images (2,427 / 4,365 / 4,439 / 4,357; any other count is an error; the
RLW paper rounds to 15,500).  Split: the 60/20/20 lists the RLW authors published in
LibMTL (default; see ``_office.py``) or ``--split random``.

Download: Google Drive (``OfficeHomeDataset_10072016.zip``; the old link needs its
resource key, passed here) with gdown, the optional ``data`` extra
(``pip install -e '.[data]'``).  Checksum: none is published for the archive; its sha256
is printed and recorded in ``<out>/checksums.json`` once it has been extracted, and
checked later (``--expect-sha256`` pins a value you trust).  The LibMTL lists are checked
against the sha256 pinned below.  If Drive refuses, download by hand and pass
``--archive FILE`` (any file name).  Read by
``mtlkit.data.office.load_office("office_home")``.

    python data_scripts/office_home.py --out .data
"""

from _office import Domain, Release, prepare

RELEASE = Release(
    name="office_home", libmtl_dataset="office-home", file="OfficeHomeDataset_10072016.zip",
    drive_id="0B81rNlvomiwed0V1YUxQdC1uOTg", resource_key="0-2SNWq0CDAuWOBRRBL7ZZsw",
    domains=(Domain("art", "Art", "Art", 2427),
             Domain("clipart", "Clipart", "Clipart", 4365),
             Domain("product", "Product", "Product", 4439),
             Domain("real_world", "Real_World", "Real World", 4357)),
    list_sha256={
        "Art_test.txt": "a37a26252832ba9a7fb8cbaef4fbbe13a5c967fe85fd536afcef4a3f355c310c",
        "Art_train.txt": "998309f57ee17997d5facfe3f8b3dd83f0464ca77ef4a4402ff4e5dd1f993de9",
        "Art_val.txt": "ab97759a61d6cf4a38ec95a88dea7ad3928ff7acd18d5c8b86141b6ef53434fb",
        "Clipart_test.txt": "7ecc7f43cd594f3a52d83b12d7eff932af8ac6d0cc46c5520561fd97554b5fe9",
        "Clipart_train.txt": "38b42c780827d5145a1026643063da5a8a78446046943d0921218f374929d9be",
        "Clipart_val.txt": "5a08d968c1c123ed13b155135dad7cfc1b4f60e6f71bf76f63a0de4e12ecec97",
        "Product_test.txt": "600910868ec4e5604c56619623c01ee1e12d057efad4f87bdb3548c88c026c82",
        "Product_train.txt": "d754516489f20a5562e4032861ffbaf7311461425dc9465d4368a28123d936ea",
        "Product_val.txt": "55e783b3abb1dd2f2b4570d40f68009a457fb99b963d07182c68e5665a980a06",
        "Real_World_test.txt":
            "08e84d4c9a93273db0a21fce14c059ee9cbf2a761fad0a63337ff56bdf3b7af6",
        "Real_World_train.txt":
            "bd9365b8e1171e21774a70cec104f1d23aa0d5d475e3e5df21c0f865d920c1bb",
        "Real_World_val.txt":
            "6d35d64e3be11e313b422903ddfd13df09ff43970a75762a4b1eaf48a754b798",
    })


def main(argv: list[str] | None = None) -> None:
    prepare(__doc__, RELEASE, argv)


if __name__ == "__main__":
    main()
