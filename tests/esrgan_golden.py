#!/usr/bin/python3
"""esrgan_golden.py - PyTorch reference for test_esrgan_golden.c.

Reads the initial weights, hyper-parameters and batches that the C test
wrote, trains the original ESRGAN loop of eriklindernoren/PyTorch-GAN
(generator RRDB, BatchNorm discriminator, VGG19 to conv5_4, relativistic
losses, warm-up, two Adams) for the same steps, and writes the losses, the
first GAN step's output and gradients, and the final weights back.
Usage: /usr/bin/python3 esrgan_golden.py IN.bin OUT.bin
"""
import struct
import sys

import numpy as np
import torch
import torch.nn as nn


class DenseResidualBlock(nn.Module):
    def __init__(self, filters, res_scale=0.2):
        super().__init__()
        self.res_scale = res_scale

        def block(in_features, non_linearity=True):
            layers = [nn.Conv2d(in_features, filters, 3, 1, 1, bias=True)]
            if non_linearity:
                layers += [nn.LeakyReLU()]
            return nn.Sequential(*layers)

        self.b1 = block(1 * filters)
        self.b2 = block(2 * filters)
        self.b3 = block(3 * filters)
        self.b4 = block(4 * filters)
        self.b5 = block(5 * filters, non_linearity=False)
        self.blocks = [self.b1, self.b2, self.b3, self.b4, self.b5]

    def forward(self, x):
        inputs = x
        for block in self.blocks:
            out = block(inputs)
            inputs = torch.cat([inputs, out], 1)
        return out.mul(self.res_scale) + x


class RRDB(nn.Module):
    def __init__(self, filters, res_scale=0.2):
        super().__init__()
        self.res_scale = res_scale
        self.dense_blocks = nn.Sequential(DenseResidualBlock(filters),
                                          DenseResidualBlock(filters),
                                          DenseResidualBlock(filters))

    def forward(self, x):
        return self.dense_blocks(x).mul(self.res_scale) + x


class GeneratorRRDB(nn.Module):
    def __init__(self, channels, filters, num_res_blocks, num_upsample=2):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, filters, 3, 1, 1)
        self.res_blocks = nn.Sequential(*[RRDB(filters) for _ in range(num_res_blocks)])
        self.conv2 = nn.Conv2d(filters, filters, 3, 1, 1)
        up = []
        for _ in range(num_upsample):
            up += [nn.Conv2d(filters, filters * 4, 3, 1, 1), nn.LeakyReLU(),
                   nn.PixelShuffle(upscale_factor=2)]
        self.upsampling = nn.Sequential(*up)
        self.conv3 = nn.Sequential(nn.Conv2d(filters, filters, 3, 1, 1), nn.LeakyReLU(),
                                   nn.Conv2d(filters, channels, 3, 1, 1))

    def forward(self, x):
        out1 = self.conv1(x)
        out = self.res_blocks(out1)
        out2 = self.conv2(out)
        out = torch.add(out1, out2)
        out = self.upsampling(out)
        return self.conv3(out)


class Discriminator(nn.Module):
    def __init__(self, input_shape):
        super().__init__()
        c, h, w = input_shape
        self.output_shape = (1, h // 16, w // 16)

        def block(inf, outf, first_block=False):
            layers = [nn.Conv2d(inf, outf, 3, 1, 1)]
            if not first_block:
                layers.append(nn.BatchNorm2d(outf))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            layers.append(nn.Conv2d(outf, outf, 3, 2, 1))
            layers.append(nn.BatchNorm2d(outf))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        layers = []
        inf = c
        for i, outf in enumerate([64, 128, 256, 512]):
            layers.extend(block(inf, outf, first_block=(i == 0)))
            inf = outf
        layers.append(nn.Conv2d(outf, 1, 3, 1, 1))
        self.model = nn.Sequential(*layers)

    def forward(self, img):
        return self.model(img)


def vgg19_features_to_conv54():
    """torchvision vgg19().features[:35], built without torchvision."""
    cfg = [64, 64, 'M', 128, 128, 'M', 256, 256, 256, 256, 'M',
           512, 512, 512, 512, 'M', 512, 512, 512, 512]
    layers, inc = [], 3
    for v in cfg:
        if v == 'M':
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(inc, v, 3, padding=1), nn.ReLU(inplace=True)]
            inc = v
    return nn.Sequential(*layers[:35])


def load_flat(module, flat):
    off = 0
    with torch.no_grad():
        for p in module.parameters():
            n = p.numel()
            p.copy_(torch.from_numpy(flat[off:off + n].reshape(p.shape)))
            off += n
    assert off == flat.size, (off, flat.size)


def flat(tensors):
    return np.concatenate([t.detach().reshape(-1).numpy() for t in tensors])


def main():
    inp, outp = sys.argv[1], sys.argv[2]
    torch.set_num_threads(2)
    data = open(inp, 'rb').read()
    assert data[:8] == b'ESRGOLD1', 'bad magic'
    hr, F, B, N, steps, warmup = struct.unpack_from('<6i', data, 8)
    lr_, b1, b2, l_adv, l_pix, l_con = struct.unpack_from('<6f', data, 32)
    off = 56
    G = GeneratorRRDB(3, F, B)
    D = Discriminator((3, hr, hr))
    V = vgg19_features_to_conv54()
    V.eval()

    def take(n):
        nonlocal off
        a = np.frombuffer(data, dtype='<f4', count=n, offset=off).copy()
        off += 4 * n
        return a

    for m in (G, D, V):
        load_flat(m, take(sum(p.numel() for p in m.parameters())))
    lrs, hrs = [], []
    lrside = hr // 4
    for _ in range(steps):
        lrs.append(torch.from_numpy(take(N * 3 * lrside * lrside).reshape(N, 3, lrside, lrside)))
        hrs.append(torch.from_numpy(take(N * 3 * hr * hr).reshape(N, 3, hr, hr)))
    assert off == len(data)

    crit_gan = nn.BCEWithLogitsLoss()
    crit_content = nn.L1Loss()
    crit_pixel = nn.L1Loss()
    opt_G = torch.optim.Adam(G.parameters(), lr=lr_, betas=(b1, b2))
    opt_D = torch.optim.Adam(D.parameters(), lr=lr_, betas=(b1, b2))
    losses, first = [], None
    for i in range(steps):
        imgs_lr, imgs_hr = lrs[i], hrs[i]
        valid = torch.ones((N, *D.output_shape))
        fake = torch.zeros((N, *D.output_shape))
        opt_G.zero_grad()
        gen_hr = G(imgs_lr)
        loss_pixel = crit_pixel(gen_hr, imgs_hr)
        if i < warmup:
            loss_pixel.backward()
            opt_G.step()
            losses.append([loss_pixel.item(), 0, 0, loss_pixel.item(), 0])
            continue
        pred_real = D(imgs_hr).detach()
        pred_fake = D(gen_hr)
        loss_GAN = crit_gan(pred_fake - pred_real.mean(0, keepdim=True), valid)
        gen_features = V(gen_hr)
        real_features = V(imgs_hr).detach()
        loss_content = crit_content(gen_features, real_features)
        loss_G = l_con * loss_content + l_adv * loss_GAN + l_pix * loss_pixel
        loss_G.backward()
        g_grads = flat([p.grad for p in G.parameters()])
        opt_G.step()
        opt_D.zero_grad()
        pred_real = D(imgs_hr)
        pred_fake = D(gen_hr.detach())
        loss_real = crit_gan(pred_real - pred_fake.mean(0, keepdim=True), valid)
        loss_fake = crit_gan(pred_fake - pred_real.mean(0, keepdim=True), fake)
        loss_D = (loss_real + loss_fake) / 2
        loss_D.backward()
        d_grads = flat([p.grad for p in D.parameters()])
        opt_D.step()
        losses.append([loss_pixel.item(), loss_content.item(), loss_GAN.item(),
                       loss_G.item(), loss_D.item()])
        if first is None:
            first = (gen_hr.detach().reshape(-1).numpy().copy(), g_grads, d_grads)
    assert first is not None, 'no GAN step'
    running = []
    for m in D.modules():
        if isinstance(m, nn.BatchNorm2d):
            running += [m.running_mean, m.running_var]
    with open(outp, 'wb') as f:
        f.write(b'ESRGOUT1')
        f.write(np.asarray(losses, dtype='<f4').tobytes())
        for a in first:
            f.write(a.astype('<f4').tobytes())
        f.write(flat(G.parameters()).astype('<f4').tobytes())
        f.write(flat(D.parameters()).astype('<f4').tobytes())
        f.write(flat(running).astype('<f4').tobytes())


if __name__ == '__main__':
    main()
