"""Baseline for `cargo xtask bench collectives`: torch.distributed gloo all-reduce.

Spawns WORLD processes on 127.0.0.1 that all-reduce (sum) one float32 tensor of
BYTES bytes, each measured call right after a barrier, and prints (from rank 0) one
line per rank: `RESULT rank=R times_ms=t1,t2,...` (the same format as
`scop-worker bench-allreduce`).

Usage: python gloo_allreduce.py WORLD BYTES WARMUP ITERS PORT
"""

import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def rank_main(rank, world, nbytes, warmup, iters, port):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    tensor = torch.full((nbytes // 4,), 0.5, dtype=torch.float32)
    for _ in range(warmup):
        dist.all_reduce(tensor)
    times = []
    for _ in range(iters):
        tensor.fill_(1.0)
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(tensor)
        times.append((time.perf_counter() - start) * 1e3)
    if iters and not bool((tensor == world).all()):
        raise SystemExit(f"rank {rank}: wrong all-reduce result")
    # Ranks share stdout, so rank 0 prints every rank's line to keep them whole.
    mine = torch.tensor(times, dtype=torch.float64)
    everyone = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(everyone, mine)
    if rank == 0:
        for r, ts in enumerate(everyone):
            print(f"RESULT rank={r} times_ms={','.join(f'{t:.3f}' for t in ts.tolist())}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    world, nbytes, warmup, iters, port = (int(a) for a in sys.argv[1:6])
    mp.spawn(rank_main, args=(world, nbytes, warmup, iters, port), nprocs=world)
