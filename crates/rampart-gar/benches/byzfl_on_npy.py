#!/usr/bin/env python3
"""Time ByzFL 0.0.11's aggregators on the .npy files written by the Rust bench.

    cargo bench -p rampart-gar --bench bench_main -- --write-npy /tmp/gar-npy
    python3 -m venv /tmp/byzvenv
    /tmp/byzvenv/bin/pip install --no-deps byzfl==0.0.11 && /tmp/byzvenv/bin/pip install numpy scipy threadpoolctl
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /tmp/byzvenv/bin/python \
        crates/rampart-gar/benches/byzfl_on_npy.py /tmp/gar-npy

ByzFL imports torch at module level but its numpy paths never call it; torch is
large, so when it is not installed a minimal stand-in module is put in its place
(only the names ByzFL touches at import time and in type checks). ByzFL has no
Bulyan; MultiKrum is its closest rule (the reference figure of the speed target).
Prints one markdown row per (file, rule): median seconds of the timed calls.
"""
import glob
import os
import re
import statistics
import sys
import time
import types

import numpy as np

try:
    import torch  # noqa: F401
except ImportError:
    stub = types.ModuleType("torch")

    class Tensor:  # only used in isinstance checks on numpy inputs
        pass

    stub.Tensor = Tensor
    stub.manual_seed = lambda *a, **k: None
    stub.cuda = types.SimpleNamespace(manual_seed=lambda *a, **k: None,
                                      manual_seed_all=lambda *a, **k: None)
    stub.backends = types.SimpleNamespace(cudnn=types.SimpleNamespace())
    stub.__path__ = []  # a package, so that `import torch.linalg` works
    linalg = types.ModuleType("torch.linalg")
    stub.linalg = linalg
    sys.modules["torch"] = stub
    sys.modules["torch.linalg"] = linalg

# Import the aggregators without byzfl/__init__.py, which pulls the training
# framework (torch, torchvision) in.
import importlib.util  # noqa: E402

spec = importlib.util.find_spec("byzfl")
pkg = types.ModuleType("byzfl")
pkg.__path__ = list(spec.submodule_search_locations)
sys.modules["byzfl"] = pkg
from byzfl.aggregators.aggregators import Krum, MultiKrum, Median, TrMean, Average  # noqa: E402


def time_median(fn, budget=1.0, max_reps=15, min_reps=3):
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (len(times) < max_reps and time.perf_counter() - start < budget):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: byzfl_on_npy.py DIR_WITH_bench_nN_dD.npy")
    krum_f = {10: 2, 20: 4, 50: 12}
    print("| n | f | d | ByzFL rule | seconds |")
    print("|---|---|---|---|---|")
    for path in sorted(glob.glob(os.path.join(sys.argv[1], "bench_n*_d*.npy")),
                       key=lambda p: tuple(int(x) for x in re.findall(r"\d+", os.path.basename(p)))):
        X = np.load(path)
        n, d = X.shape
        f = krum_f.get(n, (n - 3) // 2)
        for name, agg in [("multikrum", MultiKrum(f=f)), ("krum", Krum(f=f)),
                          ("median", Median()), ("trmean", TrMean(f=f)), ("average", Average())]:
            secs = time_median(lambda: agg(X))
            print(f"| {n} | {f} | {d} | {name} | {secs:.5f} |", flush=True)


if __name__ == "__main__":
    main()
