"""``scenes``: a SYNTHETIC, procedurally rendered indoor-scene set with per-pixel
semantic class, depth and surface normals, so the NYUv2 pipeline (segmentation + depth
+ normals, ``rlw.md`` §5.1) can be taught on a CPU.

Nothing here is real data.  Each image is a ray-cast room seen by a pinhole camera
(random height, pitch and field of view): a floor, a ceiling, three walls, a "painting"
rectangle on the back wall, and 1-4 objects on the floor (spheres, boxes rotated about
the vertical axis, vertical cylinders).  Every quantity is computed analytically from the
ray-primitive intersections, so the labels are exact:

* ``segmentation``: 7 classes (:data:`CLASSES`), no void pixels;
* ``depth``: z-depth in metres along the optical axis, (1, H, W);
* ``normals``: unit surface normals in the camera frame (x right, y up, z forward),
  facing the camera, (3, H, W).

The input is a shaded RGB image (Lambertian light + ambient, per-instance colour
jitter, a checkered floor, striped paintings, pixel noise), float32 (3, H, W) in [0, 1].

Differences from NYUv2: synthetic, 7 classes instead of 13, small images (default
48 x 64, the 3:4 aspect of NYUv2's 288 x 384), no sensor noise/holes in depth.  Default
split sizes copy NYUv2's 795 train / 654 test, plus a validation split.

``variant`` picks the task set of the benchmark the scenes stand in for (same renders):

* ``"nyuv2"`` (default): segmentation, depth, normals (``rlw.md`` Table 1);
* ``"cityscapes"``: segmentation and depth (App. C.3, Table 8);
* ``"pascal_context"``: segmentation, ``human_parts``, ``saliency`` and normals (Table 2),
  where the two PASCAL-only tasks are derived exactly from the render
  (:func:`pascal_targets`): *object parts* stand in for human parts (background, then
  top and side faces of the sphere, box and cylinder: 7 classes, as PASCAL's background
  + 6 parts) and *foreground objects* (painting and objects against the room) stand in
  for saliency (2 classes).
"""

from __future__ import annotations

import numpy as np
import torch

from mtlkit.data.base import MTLData, TaskSpec
from mtlkit.data.common import MultiTargetDataset, cached, check_tasks, hash_key

CLASSES = ["floor", "wall", "ceiling", "painting", "sphere", "box", "cylinder"]
_BASE = np.array([[0.55, 0.42, 0.30], [0.80, 0.78, 0.72], [0.92, 0.92, 0.95],
                  [0.30, 0.45, 0.75], [0.85, 0.25, 0.20], [0.35, 0.65, 0.35],
                  [0.85, 0.70, 0.20]])
_EPS = 1e-4


def _rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rot_x(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _plane(d: np.ndarray, axis: int, value: float) -> np.ndarray:
    """Ray parameter t of the hit of rays ``t*d`` with the plane ``x[axis] = value``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = value / d[:, axis]
    return np.where(t > _EPS, t, np.inf)


def _sphere(d: np.ndarray, c: np.ndarray, r: float) -> tuple[np.ndarray, np.ndarray]:
    b = d @ c
    disc = b * b - (c @ c - r * r)
    t = np.where(disc >= 0, b - np.sqrt(np.maximum(disc, 0)), np.inf)
    t = np.where(t > _EPS, t, np.inf)
    n = (t[:, None] * d - c) / r
    return t, n


def _box(d: np.ndarray, c: np.ndarray, h: np.ndarray, angle: float):
    """Hit of rays with a box (centre c, half sizes h) rotated by ``angle`` about y."""
    rot = _rot_y(angle)
    dl = d @ rot  # rows: R^T d
    ol = -(rot.T @ c)
    with np.errstate(divide="ignore", invalid="ignore"):
        t1 = (-h - ol) / dl
        t2 = (h - ol) / dl
    tlo, thi = np.minimum(t1, t2), np.maximum(t1, t2)
    tlo = np.nan_to_num(tlo, nan=-np.inf)
    thi = np.nan_to_num(thi, nan=np.inf)
    tmin, tmax = tlo.max(1), thi.min(1)
    hit = (tmax >= tmin) & (tmin > _EPS)
    axis = tlo.argmax(1)
    nl = np.zeros_like(d)
    nl[np.arange(len(d)), axis] = -np.sign(dl[np.arange(len(d)), axis])
    return np.where(hit, tmin, np.inf), nl @ rot.T


def _cylinder(d: np.ndarray, cx: float, cz: float, r: float, y0: float, y1: float):
    """Hit of rays with a vertical capped cylinder (axis at x=cx, z=cz, y in [y0, y1])."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = d[:, 0] * cx + d[:, 2] * cz
    disc = b * b - a * (cx * cx + cz * cz - r * r)
    with np.errstate(divide="ignore", invalid="ignore"):
        ts = np.where(disc >= 0, (b - np.sqrt(np.maximum(disc, 0))) / a, np.inf)
    ys = ts * d[:, 1]
    ts = np.where((ts > _EPS) & (ys >= y0) & (ys <= y1), ts, np.inf)
    tc = _plane(d, 1, y1)
    px, pz = tc * d[:, 0] - cx, tc * d[:, 2] - cz
    with np.errstate(invalid="ignore"):
        tc = np.where(px * px + pz * pz <= r * r, tc, np.inf)
    side = ts <= tc
    t = np.where(side, ts, tc)
    n = np.zeros_like(d)
    p = t[:, None] * d
    n[:, 0] = np.where(side, (p[:, 0] - cx) / r, 0)
    n[:, 2] = np.where(side, (p[:, 2] - cz) / r, 0)
    n[:, 1] = np.where(side, 0, 1)
    return t, n


def render_scene(rng: np.random.Generator, height: int = 48, width: int = 64) -> dict:
    """One scene: ``image`` (3,H,W), ``segmentation`` (H,W) int, ``depth`` (1,H,W),
    ``normals`` (3,H,W) (camera frame), all numpy, and the focal length ``fx`` in pixels
    (pixel (i, j) looks along ((j + .5 - W/2) / fx, -(i + .5 - H/2) / fx, 1))."""
    fovx = np.deg2rad(rng.uniform(55, 70))
    fx = 0.5 * width / np.tan(fovx / 2)
    jj, ii = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dcam = np.stack([(jj - width / 2) / fx, -(ii - height / 2) / fx,
                     np.ones_like(jj)], -1).reshape(-1, 3)
    dcam /= np.linalg.norm(dcam, axis=1, keepdims=True)
    cam_rot = _rot_x(np.deg2rad(rng.uniform(-15, 5)))  # pitch (negative looks down)
    d = dcam @ cam_rot.T  # world directions, camera at the origin
    cam_h = rng.uniform(1.0, 1.6)
    floor_y, ceil_y = -cam_h, rng.uniform(2.4, 3.0) - cam_h
    half_w, back = rng.uniform(2.0, 3.2), rng.uniform(5.0, 8.0)

    hits: list[tuple[np.ndarray, np.ndarray, int]] = []  # (t, world normal, class)
    one = np.ones_like(d)
    hits.append((_plane(d, 1, floor_y), one * [0, 1, 0], 0))
    hits.append((_plane(d, 1, ceil_y), one * [0, -1, 0], 2))
    hits.append((_plane(d, 0, -half_w), one * [1, 0, 0], 1))
    hits.append((_plane(d, 0, half_w), one * [-1, 0, 0], 1))
    hits.append((_plane(d, 2, back), one * [0, 0, -1], 1))
    for _ in range(int(rng.integers(1, 5))):
        kind = int(rng.integers(0, 3))
        x, z = rng.uniform(-half_w + 0.6, half_w - 0.6), rng.uniform(2.2, back - 0.8)
        if kind == 0:
            r = rng.uniform(0.25, 0.6)
            t, n = _sphere(d, np.array([x, floor_y + r, z]), r)
            hits.append((t, n, 4))
        elif kind == 1:
            h = rng.uniform([0.2, 0.15, 0.2], [0.6, 0.6, 0.6])
            t, n = _box(d, np.array([x, floor_y + h[1], z]), h, rng.uniform(0, np.pi / 2))
            hits.append((t, n, 5))
        else:
            r = rng.uniform(0.15, 0.4)
            t, n = _cylinder(d, x, z, r, floor_y, floor_y + rng.uniform(0.5, 1.6))
            hits.append((t, n, 6))

    ts = np.stack([h[0] for h in hits])
    which = ts.argmin(0)
    pix = np.arange(len(d))
    t = ts[which, pix]
    normal = np.stack([h[1] for h in hits])[which, pix]
    cls = np.array([h[2] for h in hits])[which]
    p = t[:, None] * d

    # a painting: a rectangle on the back wall (same geometry as the wall, new class)
    px0, py0 = rng.uniform(-half_w + 0.3, half_w - 1.5), rng.uniform(floor_y + 0.8, 0.2)
    pw, ph = rng.uniform(0.6, 1.4), rng.uniform(0.4, 1.0)
    on_back = (which == 4) & (p[:, 0] > px0) & (p[:, 0] < px0 + pw) & \
              (p[:, 1] > py0) & (p[:, 1] < py0 + ph)
    cls = np.where(on_back, 3, cls)

    albedo = _BASE[cls] * rng.uniform(0.8, 1.2, size=(len(hits) + 1, 3))[
        np.where(on_back, len(hits), which)]
    checker = ((np.floor(p[:, 0] * 2) + np.floor(p[:, 2] * 2)) % 2)[:, None]
    albedo = np.where((cls == 0)[:, None], albedo * (0.75 + 0.25 * checker), albedo)
    stripes = (np.floor((p[:, 0] - px0) * 8) % 2)[:, None]
    albedo = np.where((cls == 3)[:, None], albedo * (0.6 + 0.4 * stripes), albedo)
    light = np.array([0.4, 0.8, -0.45])
    light /= np.linalg.norm(light)
    shade = 0.45 + 0.55 * np.clip(normal @ light, 0, 1)
    img = np.clip(albedo * shade[:, None] + rng.normal(0, 0.02, size=albedo.shape), 0, 1)

    ncam = normal @ cam_rot  # rows: R^T n, world -> camera frame
    ncam /= np.linalg.norm(ncam, axis=1, keepdims=True)
    depth = t * dcam[:, 2]
    return {"image": img.reshape(height, width, 3).transpose(2, 0, 1).astype(np.float32),
            "segmentation": cls.reshape(height, width).astype(np.int64),
            "depth": depth.reshape(1, height, width).astype(np.float32),
            "normals": ncam.reshape(height, width, 3).transpose(2, 0, 1).astype(np.float32),
            "fx": float(fx)}


def _render_many(n: int, seed: int, height: int, width: int) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    scenes = [render_scene(rng, height, width) for _ in range(n)]
    return {k: torch.from_numpy(np.stack([s[k] for s in scenes])) for k in scenes[0]
            if k != "fx"}


def _valid_render(d: dict, n: int, height: int, width: int) -> bool:
    """A cached render has every field as an (n, ., height, width) tensor."""
    want = {"image": 3, "segmentation": None, "depth": 1, "normals": 3}
    for k, c in want.items():
        t = d[k]
        shape = (n, height, width) if c is None else (n, c, height, width)
        if not torch.is_tensor(t) or tuple(t.shape) != shape:
            return False
    return True


#: variant -> (task names, what it stands in for)
VARIANTS = {
    "nyuv2": (("segmentation", "depth", "normals"),
              "NYUv2 (13-class segmentation, depth, normals; rlw.md §5.1)"),
    "cityscapes": (("segmentation", "depth"),
                   "Cityscapes (7-class segmentation, depth; rlw.md App. C.3)"),
    "pascal_context": (("segmentation", "human_parts", "saliency", "normals"),
                       "PASCAL-Context (21-class segmentation, 7 human parts, saliency, "
                       "normals; rlw.md §5.1)"),
}
#: the class ids of :data:`CLASSES` that count as objects (parts) and as salient
OBJECTS = (4, 5, 6)
SALIENT = (3, 4, 5, 6)
TOP_FACE = 0.5  #: a pixel of an object whose camera-frame normal has y > this is "top"


def pascal_targets(seg: torch.Tensor, normals: torch.Tensor) -> dict[str, torch.Tensor]:
    """The PASCAL-only tasks of the ``pascal_context`` variant, from a render's labels
    ``seg`` (N, H, W) and ``normals`` (N, 3, H, W):

    * ``saliency`` = 1 where the class is in :data:`SALIENT`, else 0;
    * ``human_parts`` = 0 off the objects, and on object k (sphere, box, cylinder =
      0, 1, 2) ``1 + 2 k`` on its top faces (normal y > :data:`TOP_FACE`), ``2 + 2 k``
      on its sides: 7 classes.
    """
    obj = torch.zeros_like(seg, dtype=torch.bool)
    for c in OBJECTS:
        obj |= seg == c
    sal = torch.zeros_like(seg)
    for c in SALIENT:
        sal = torch.where(seg == c, 1, sal)
    side = (normals[:, 1] <= TOP_FACE).long()
    parts = torch.where(obj, 1 + 2 * (seg - OBJECTS[0]).clamp(min=0) + side, 0)
    return {"human_parts": parts.long(), "saliency": sal.long()}


def load_scenes(*, n_train: int = 795, n_val: int = 80, n_test: int = 654, height: int = 48,
                width: int = 64, seed: int = 0, tasks: list[str] | None = None,
                cache: bool = True, variant: str = "nyuv2") -> MTLData:
    """The synthetic scene set (see the module docstring).  Heterogeneous: ``train[i]`` is
    ``(image, {"segmentation": (H,W) long, "depth": (1,H,W), "normals": (3,H,W)})``, with
    the tasks of ``variant`` (``nyuv2``, ``cityscapes`` or ``pascal_context``)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}; choose one of {sorted(VARIANTS)}")
    names = check_tasks(tasks, list(VARIANTS[variant][0]), "scenes")
    for k, v in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test),
                 ("height", height), ("width", width)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{k}={v!r} must be a positive int")
    parts = {}
    for i, (split, n) in enumerate((("train", n_train), ("val", n_val), ("test", n_test))):
        s = seed * 1000 + i  # disjoint, reproducible streams per split
        raw = cached("scenes", hash_key(1, n, s, height, width),
                     lambda n=n, s=s: _render_many(n, s, height, width), cache,
                     validate=lambda d, n=n: _valid_render(d, n, height, width))
        if variant == "pascal_context":
            raw = {**raw, **pascal_targets(raw["segmentation"], raw["normals"])}
        parts[split] = MultiTargetDataset(raw["image"], {t: raw[t] for t in names})
    specs = {"segmentation": TaskSpec("segmentation", "segmentation", len(CLASSES)),
             "depth": TaskSpec("depth", "depth"), "normals": TaskSpec("normals", "normals"),
             "human_parts": TaskSpec("human_parts", "segmentation", 7),
             "saliency": TaskSpec("saliency", "segmentation", 2)}
    extra = (", object parts for human parts, foreground objects for saliency"
             if variant == "pascal_context" else "")
    return MTLData("scenes", [specs[t] for t in names], False, parts["train"], parts["val"],
                   parts["test"], stands_in_for=VARIANTS[variant][1],
                   differences="SYNTHETIC ray-cast rooms, 7 classes, small images "
                               f"({height}x{width}), exact labels, no sensor noise{extra}",
                   meta={"classes": CLASSES, "seed": seed, "variant": variant})
