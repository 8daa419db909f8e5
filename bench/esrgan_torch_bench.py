#!/usr/bin/python3
"""esrgan_torch_bench.py - the PyTorch side of bench/bench_esrgan.c.

Times the original ESRGAN training loop of eriklindernoren/PyTorch-GAN
(models from tests/esrgan_golden.py, random weights, synthetic batches in
memory, 2 threads) for one config: median seconds of the warm-up step
(pixel loss only) and of the full GAN step (G step + D step, VGG content
loss with VGG weight gradients, as the original computes them).
Usage: /usr/bin/python3 esrgan_torch_bench.py --hr 128 --batch 4 --F 64 --B 23
       [--steps 5] [--warm 2] [--result-fd FD]
Prints "warmup_s X", "gan_s Y" (medians), "warmup_min_s", "gan_min_s"
(fastest steps) and "rss_mb Z" (its own peak RSS) to FD
(default stdout).
"""
import argparse
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests'))
from esrgan_golden import Discriminator, GeneratorRRDB, vgg19_features_to_conv54  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    for k, v in (('hr', 128), ('batch', 4), ('F', 64), ('B', 23), ('steps', 5), ('warm', 2),
                 ('result_fd', 1)):
        ap.add_argument('--' + k.replace('_', '-'), dest=k, type=int, default=v)
    a = ap.parse_args()
    out = os.fdopen(a.result_fd, 'w') if a.result_fd != 1 else sys.stdout
    if a.hr % 16 or a.hr < 16 or a.batch < 1 or a.steps < 1 or a.warm < 0:
        sys.exit('esrgan_torch_bench: hr must be a multiple of 16, batch and steps >= 1')
    torch.set_num_threads(int(os.environ.get('OMP_NUM_THREADS', '2')))
    torch.manual_seed(0)
    N, hr = a.batch, a.hr
    G = GeneratorRRDB(3, a.F, a.B)
    D = Discriminator((3, hr, hr))
    V = vgg19_features_to_conv54()
    V.eval()
    crit_gan = nn.BCEWithLogitsLoss()
    crit_l1 = nn.L1Loss()
    opt_G = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.9, 0.999))
    opt_D = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.9, 0.999))
    imgs_lr = torch.rand(N, 3, hr // 4, hr // 4) * 4 - 2
    imgs_hr = torch.rand(N, 3, hr, hr) * 4 - 2
    valid = torch.ones((N, *D.output_shape))
    fake = torch.zeros((N, *D.output_shape))

    def step(warmup):
        opt_G.zero_grad()
        gen_hr = G(imgs_lr)
        loss_pixel = crit_l1(gen_hr, imgs_hr)
        if warmup:
            loss_pixel.backward()
            opt_G.step()
            return loss_pixel.item()
        pred_real = D(imgs_hr).detach()
        pred_fake = D(gen_hr)
        loss_GAN = crit_gan(pred_fake - pred_real.mean(0, keepdim=True), valid)
        gen_features = V(gen_hr)
        real_features = V(imgs_hr).detach()
        loss_content = crit_l1(gen_features, real_features)
        loss_G = loss_content + 5e-3 * loss_GAN + 1e-2 * loss_pixel
        loss_G.backward()
        opt_G.step()
        opt_D.zero_grad()
        pred_real = D(imgs_hr)
        pred_fake = D(gen_hr.detach())
        loss_real = crit_gan(pred_real - pred_fake.mean(0, keepdim=True), valid)
        loss_fake = crit_gan(pred_fake - pred_real.mean(0, keepdim=True), fake)
        loss_D = (loss_real + loss_fake) / 2
        loss_D.backward()
        opt_D.step()
        return loss_G.item() + loss_D.item()

    for name, warmup in (('warmup_s', True), ('gan_s', False)):
        times = []
        for i in range(a.warm + a.steps):
            t0 = time.perf_counter()
            step(warmup)
            if i >= a.warm:
                times.append(time.perf_counter() - t0)
        print('%s %.6f' % (name, statistics.median(times)), file=out, flush=True)
        print('%s %.6f' % (name.replace('_s', '_min_s'), min(times)), file=out, flush=True)
    print('rss_mb %.1f' % (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0),
          file=out, flush=True)


if __name__ == '__main__':
    main()
