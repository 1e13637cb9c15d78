#!/usr/bin/env python3
"""Reference model inputs for agent/src/vision/adapters/resize.test.ts, computed with numpy in float64
independently of the TypeScript code: bilinear resize with half-pixel centres (OpenCV's INTER_LINEAR
sampling), letterbox or stretch geometry, normalisation, channel order and layout.

    python3 agent/scripts/resize-reference.py   # rewrites agent/test/fixtures/resize/*.f32

The source image is a formula both sides compute: value(x, y, c) = (x*7 + y*13 + c*91 + (x*y % 17)*5) % 256.
"""
import json
import math
import os
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'resize')

CASES = [
    # name, src w, src h, dst w, dst h, resize, layout, colour order, scale, mean, std, pad
    ('stretch-down-bgr-nchw', 193, 145, 64, 64, 'stretch', 'nchw', 'bgr', 1 / 255, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 0),
    ('letterbox-down-rgb-nchw', 150, 90, 48, 48, 'letterbox', 'nchw', 'rgb', 1 / 255, [0, 0, 0], [1, 1, 1], 114),
    ('letterbox-up-rgb-nhwc', 23, 31, 40, 40, 'letterbox', 'nhwc', 'rgb', 1, [10, 20, 30], [2, 4, 8], 114),
    ('stretch-same-bgr-nchw', 40, 30, 40, 30, 'stretch', 'nchw', 'bgr', 1 / 255, [0.5, 0.5, 0.5], [0.5, 0.5, 0.5], 0),
]


def image(w, h):
    y, x, c = np.meshgrid(np.arange(h), np.arange(w), np.arange(3), indexing='ij')
    return ((x * 7 + y * 13 + c * 91 + (x * y % 17) * 5) % 256).astype(np.float64)


def js_round(v):
    return math.floor(v + 0.5)


def axis(src, dst, scale):
    d = np.arange(dst, dtype=np.float64)
    s = np.maximum((d + 0.5) / scale - 0.5, 0)
    lo = np.floor(s).astype(np.int64)
    frac = s - lo
    edge = lo >= src - 1
    lo[edge] = src - 1
    frac[edge] = 0
    hi = np.minimum(lo + 1, src - 1)
    return lo, hi, frac


def reference(sw, sh, dw, dh, resize, layout, order, scale, mean, std, pad):
    img = image(sw, sh)
    if resize == 'letterbox':
        k = min(dw / sw, dh / sh)
        cw = max(1, min(dw, js_round(sw * k)))
        ch = max(1, min(dh, js_round(sh * k)))
        cx, cy = (dw - cw) // 2, (dh - ch) // 2
    else:
        cw, ch, cx, cy = dw, dh, 0, 0
    x0, x1, fx = axis(sw, cw, cw / sw)
    y0, y1, fy = axis(sh, ch, ch / sh)
    fx = fx[None, :, None]
    fy = fy[:, None, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bottom = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    content = top * (1 - fy) + bottom * fy
    canvas = np.full((dh, dw, 3), float(pad))
    canvas[cy:cy + ch, cx:cx + cw] = content
    if order == 'bgr':
        canvas = canvas[:, :, ::-1]
    canvas = (canvas * scale - np.array(mean)) / np.array(std)
    if layout == 'nchw':
        canvas = canvas.transpose(2, 0, 1)
    return canvas.astype('<f4')


def main():
    os.makedirs(OUT, exist_ok=True)
    index = []
    for name, sw, sh, dw, dh, resize, layout, order, scale, mean, std, pad in CASES:
        ref = reference(sw, sh, dw, dh, resize, layout, order, scale, mean, std, pad)
        ref.tofile(os.path.join(OUT, f'{name}.f32'))
        index.append({
            'name': name, 'srcWidth': sw, 'srcHeight': sh, 'dstWidth': dw, 'dstHeight': dh, 'resize': resize,
            'format': {'layout': layout, 'colorOrder': order, 'scale': scale, 'mean': mean, 'std': std, 'padValue': pad},
        })
    with open(os.path.join(OUT, 'cases.json'), 'w') as f:
        json.dump(index, f, indent=2)
        f.write('\n')


if __name__ == '__main__':
    main()
