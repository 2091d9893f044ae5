"""The offline *source* domain: characters rendered from the TrueType fonts bundled with matplotlib.

Chapter "Pretrain and fine-tune" uses the digits as the source for the handwritten target
(:mod:`transferlab.data.handwritten`); the letters give a less related source (chapter
"Negative transfer").  Every image is brought to the format of scikit-learn's ``load_digits``
(the UCI optdigits preprocessing): the glyph is fitted into a 32×32 binary frame (its height
filling the frame, aspect kept) and each 4×4 block is counted, giving 8×8 images with 17 grey
levels.

Recipe: each glyph is rendered once at high resolution and blurred once; each sample then gets
a seeded rotation (±15°), shear (±0.3), horizontal squeeze (0.6–1.0) and shift in one batched
``grid_sample``, and a stroke width set by a random threshold (0.3–0.6) on the blurred glyph.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from torch import Tensor

DIGITS = "0123456789"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"

# Fonts that map the ASCII code points to something other than the characters themselves.
_NOT_TEXT_FONTS = ("LastResort", "cmex10", "cmsy10", "Display", "STIXNonUni", "STIXSiz")
_CANVAS = 64  # side of the high-resolution glyph canvas
_BLUR = 2.5  # Gaussian blur radius on that canvas (sets the range of stroke widths)


def font_files() -> list[Path]:
    """The bundled TrueType fonts that render Latin digits and letters (about 23), sorted."""
    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return [
        p for p in sorted(folder.glob("*.ttf")) if not any(s in p.name for s in _NOT_TEXT_FONTS)
    ]


def _render(path: Path, ch: str) -> np.ndarray:
    """One blurred glyph, ``(_CANVAS, _CANVAS)`` float32 in [0, 1], its larger side 40 px."""
    font = ImageFont.truetype(str(path), size=120)
    img = Image.new("L", (240, 240), 0)
    ImageDraw.Draw(img).text((60, 30), ch, fill=255, font=font)
    box = img.getbbox()
    if box is None:
        raise ValueError(f"font {path.name} renders {ch!r} as an empty image")
    glyph = img.crop(box)
    scale = 40 / max(glyph.size)
    glyph = glyph.resize(
        (max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))), Image.LANCZOS
    )
    canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
    canvas.paste(glyph, ((_CANVAS - glyph.width) // 2, (_CANVAS - glyph.height) // 2))
    arr = np.asarray(canvas.filter(ImageFilter.GaussianBlur(_BLUR)), dtype=np.float32) / 255.0
    return arr / max(arr.max(), 1e-6)


@lru_cache(maxsize=4)
def glyph_bank(chars: str) -> tuple[Tensor, list[str]]:
    """Blurred glyphs of every usable font: ``(F, len(chars), _CANVAS, _CANVAS)`` and font names."""
    fonts = font_files()
    bank = np.stack([np.stack([_render(p, c) for c in chars]) for p in fonts])
    return torch.from_numpy(bank), [p.stem for p in fonts]


def _fit_to_frame(binary: Tensor, shift: Tensor) -> Tensor:
    """Fit each glyph's bounding box into a 32×32 frame, height filling it, aspect kept.

    Args:
        binary: ``(N, 1, S, S)`` float 0/1 glyphs.
        shift: ``(N, 2)`` extra shift in frame pixels.
    Returns:
        ``(N, 1, 32, 32)`` float 0/1.
    """
    n, _, s, _ = binary.shape
    idx = torch.arange(s, dtype=torch.float32)
    rows = binary.amax(dim=3).squeeze(1)  # (N, S)
    cols = binary.amax(dim=2).squeeze(1)
    big = float(s)
    y0 = torch.where(rows > 0, idx, big).amin(1)
    y1 = torch.where(rows > 0, idx, -1.0).amax(1)
    x0 = torch.where(cols > 0, idx, big).amin(1)
    x1 = torch.where(cols > 0, idx, -1.0).amax(1)
    h, w = y1 - y0 + 1, x1 - x0 + 1
    side = torch.maximum(h, w)  # glyph extent that must fit in the 32-pixel frame
    # 32 output pixels cover `side` input pixels; grid coordinates are in units of S/2 pixels.
    k = side / s
    cx = (x0 + x1 + 1) / s - 1 - shift[:, 0] * side / 32 * 2 / s
    cy = (y0 + y1 + 1) / s - 1 - shift[:, 1] * side / 32 * 2 / s
    zero = torch.zeros_like(k)
    theta = torch.stack([torch.stack([k, zero, cx], 1), torch.stack([zero, k, cy], 1)], 1)
    grid = F.affine_grid(theta, (n, 1, 32, 32), align_corners=False)
    return (F.grid_sample(binary, grid, mode="bilinear", align_corners=False) > 0.5).float()


def render(
    n: int, seed: int, chars: str = DIGITS, fonts: list[int] | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """Render ``n`` jittered characters in the optdigits 8×8 / 17-level format.

    Args:
        n: number of images.
        seed: the same seed gives identical tensors.
        chars: the characters (classes), e.g. ``DIGITS`` or ``LETTERS``.
        fonts: indices into :func:`font_files` to draw from (default: all).
    Returns:
        ``x`` ``(n, 1, 8, 8)`` float32 in [0, 1] (multiples of 1/16), ``y`` ``(n,)`` class index,
        ``font`` ``(n,)`` font index.
    """
    bank, names = glyph_bank(chars)
    fonts = list(range(len(names))) if fonts is None else list(fonts)
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(len(chars), (n,), generator=g)
    font = torch.tensor(fonts)[torch.randint(len(fonts), (n,), generator=g)]

    def u(lo: float, hi: float) -> Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=g)

    rot = u(-15, 15) * math.pi / 180
    shear, squeeze, thresh = u(-0.3, 0.3), u(0.6, 1.0), u(0.3, 0.6)
    shift = torch.stack([u(-1.5, 1.5), u(-1.5, 1.5)], 1)
    # grid_sample maps output to input coordinates: input = R · Sh · diag(1/squeeze, 1) · output
    cos, sin = torch.cos(rot), torch.sin(rot)
    a11, a12 = cos / squeeze, cos * shear - sin
    a21, a22 = sin / squeeze, sin * shear + cos
    zero = torch.zeros(n)
    theta = torch.stack([torch.stack([a11, a12, zero], 1), torch.stack([a21, a22, zero], 1)], 1)
    glyphs = bank[font, y].unsqueeze(1)
    warped = F.grid_sample(
        glyphs, F.affine_grid(theta, glyphs.shape, align_corners=False), align_corners=False
    )
    peak = warped.amax(dim=(1, 2, 3))
    binary = (warped > torch.minimum(thresh, 0.9 * peak).view(n, 1, 1, 1)).float()
    frame = _fit_to_frame(binary, shift)
    counts = F.avg_pool2d(frame, 4) * 16  # 4×4 block counts, 0..16 as in optdigits
    return counts.round() / 16, y, font
