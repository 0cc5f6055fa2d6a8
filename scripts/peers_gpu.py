"""PyTorch's side of scripts/gpu-check.sh: W1/W2/W3 of `faceattr bench model` on the GPU, in
one precision mode, printed as JSON with the same keys. VGG16's layers are built here from
torch.nn (torchvision is not needed). Modes: fp32 (TF32 off), tf32 (TF32 on, channels-last),
bf16 (autocast bf16, channels-last).
Usage: peers_gpu.py fp32|tf32|bf16 REPEATS [BATCH]"""
import json, statistics, sys, time

import torch

mode, repeats = sys.argv[1], int(sys.argv[2])
batch = int(sys.argv[3]) if len(sys.argv) > 3 else 12
H, W = 218, 178
dev = torch.device("cuda")
torch.backends.cuda.matmul.allow_tf32 = mode != "fp32"
torch.backends.cudnn.allow_tf32 = mode != "fp32"
torch.backends.cudnn.benchmark = True
cl = torch.channels_last if mode != "fp32" else torch.contiguous_format

layers, cin = [], 3
for block, (width, convs) in enumerate([(64, 2), (128, 2), (256, 3), (512, 3), (512, 3)]):
    for _ in range(convs):
        layers += [torch.nn.Conv2d(cin, width, 3, padding=1), torch.nn.ReLU(inplace=True)]
        cin = width
    layers.append(torch.nn.MaxPool2d(2))
base = torch.nn.Sequential(*layers).to(dev).to(memory_format=cl)
head = torch.nn.Sequential(torch.nn.Linear(512, 128), torch.nn.ReLU(), torch.nn.BatchNorm1d(128),
                           torch.nn.Linear(128, 2)).to(dev)
for p in base[:24].parameters():
    p.requires_grad_(False)
opt = torch.optim.Adam([p for p in base.parameters() if p.requires_grad] + list(head.parameters()), 1e-3)
x12 = torch.randn(batch, 3, H, W, device=dev).to(memory_format=cl)
x32 = torch.randn(32, 3, H, W, device=dev).to(memory_format=cl)
y = torch.eye(2, device=dev)[torch.arange(batch, device=dev) % 2]


def autocast():
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "bf16")


def median_rate(n, fn):
    for _ in range(3):  # warm-up, cudnn.benchmark's search
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return n / statistics.median(times)


def w1(x):
    with torch.no_grad(), autocast():
        base(x).float().mean((2, 3))


def step(frozen_out):
    opt.zero_grad(set_to_none=True)
    with autocast():
        f = base[24:](frozen_out).float().mean((2, 3))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(head(f), y)
    loss.backward()
    opt.step()


def w2():
    with torch.no_grad(), autocast():
        pre = base[:24](x12)
    step(pre)


with torch.no_grad(), autocast():
    cached = base[:24](x12)
out = {"framework": f"pytorch {torch.__version__} {mode}", "gpu": torch.cuda.get_device_name(),
       "w1_b12_img_s": median_rate(batch, lambda: w1(x12)), "w1_b32_img_s": median_rate(32, lambda: w1(x32)),
       "w2_b12_img_s": median_rate(batch, w2), "w3_b12_img_s": median_rate(batch, lambda: step(cached))}
print(json.dumps(out))
