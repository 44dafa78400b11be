#!/usr/bin/python3
# Maintainer step (not part of set-up, build or tests): reference outputs of Pillow's bicubic
# resize (Image.resize(size, Image.BICUBIC), which Gemma 4's PIL image processor uses, spec
# gemma4-architecture.md §10.2) for mlxq's resize test. Needs Debian's python3-pil.
# Run from this folder: /usr/bin/python3 make.py
import json
import random

import PIL
from PIL import Image

rng = random.Random(2026)
cases = []


def image(name, w, h, kind):
    im = Image.new("RGB", (w, h))
    px = im.load()
    for y in range(h):
        for x in range(w):
            if kind == "noise":  # hard edges: the kernel's negative lobes clip at 0 and 255
                px[x, y] = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
            else:  # a smooth gradient with mild noise
                px[x, y] = (min(255, max(0, (x * 255) // max(1, w - 1) + rng.randrange(-8, 9))),
                            min(255, max(0, (y * 255) // max(1, h - 1) + rng.randrange(-8, 9))),
                            (x * 7 + y * 13) % 256)
    im.save(name + ".png")
    return im


sources = {"noise_37x23": image("noise_37x23", 37, 23, "noise"),
           "smooth_61x40": image("smooth_61x40", 61, 40, "smooth")}
targets = {"noise_37x23": [(96, 48), (16, 9), (37, 48), (5, 23), (144, 96)],
           "smooth_61x40": [(48, 48), (20, 13), (200, 131), (61, 7), (96, 144)]}
for src, sizes in targets.items():
    for (w, h) in sizes:
        out = f"{src}_to_{w}x{h}"
        sources[src].resize((w, h), Image.BICUBIC).save(out + ".png")
        cases.append({"input": src + ".png", "width": w, "height": h, "expected": out + ".png"})
with open("cases.json", "w") as f:
    json.dump({"pillow": PIL.__version__, "filter": "BICUBIC", "cases": cases}, f, indent=1)
    f.write("\n")
