#!/usr/bin/python3
"""vgg19_convert.py - torchvision VGG19 weights -> paramount-esrgan's --vgg file.

Usage: /usr/bin/python3 tools/vgg19_convert.py vgg19-dcbb9e9d.pth vgg19.pmvgg

Reads a torchvision vgg19 state_dict (features.N.weight / features.N.bias),
keeps the 16 convs up to conv5_4 (features.0 .. features.34), and writes:
  b"PMVGG19\\0", u64 float count (20,024,384), the float32 little-endian
  values (per conv: OIHW weight, then bias), u64 FNV-1a-64 of those bytes.
Needs only torch (Debian python3-torch) to read the .pth file.
"""
import struct
import sys

import numpy as np
import torch

CONV_INDICES = [0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34]
WIDTHS = [64, 64, 128, 128, 256, 256, 256, 256, 512, 512, 512, 512, 512, 512, 512, 512]


def fnv1a64(data: bytes) -> int:
    h = 0xcbf29ce484222325
    arr = np.frombuffer(data, dtype=np.uint8)
    for b in arr.tolist():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sd = torch.load(sys.argv[1], map_location='cpu')
    if 'state_dict' in sd:
        sd = sd['state_dict']
    parts, inc = [], 3
    for idx, oc in zip(CONV_INDICES, WIDTHS):
        w = sd.get('features.%d.weight' % idx)
        b = sd.get('features.%d.bias' % idx)
        if w is None or b is None:
            sys.exit('vgg19_convert: %s has no features.%d weight/bias: not a torchvision vgg19'
                     % (sys.argv[1], idx))
        if tuple(w.shape) != (oc, inc, 3, 3) or tuple(b.shape) != (oc,):
            sys.exit('vgg19_convert: features.%d has shape %s, expected (%d, %d, 3, 3)'
                     % (idx, tuple(w.shape), oc, inc))
        parts += [w.float().numpy().astype('<f4').ravel(), b.float().numpy().astype('<f4')]
        inc = oc
    flat = np.concatenate(parts)
    body = flat.tobytes()
    with open(sys.argv[2], 'wb') as f:
        f.write(b'PMVGG19\0')
        f.write(struct.pack('<Q', flat.size))
        f.write(body)
        f.write(struct.pack('<Q', fnv1a64(body)))
    print('wrote %s: %d floats' % (sys.argv[2], flat.size))


if __name__ == '__main__':
    main()
