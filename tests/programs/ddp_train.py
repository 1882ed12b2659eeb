#!/usr/bin/env python3
"""A real PyTorch DDP training (gloo, CPU) that checkpoints at SIGUSR1 and resumes.

Started by torchrun (one per worker) or by srun (one per rank): it reads RANK,
WORLD_SIZE, LOCAL_RANK and MASTER_ADDR/MASTER_PORT the way `init_process_group("gloo")`
does (env://). Each step trains a small linear model on this rank's shard and prints
`rank R: step S` (so a test can see which progress lines come after a signal).

SIGUSR1 (the time-limit signal) only sets a flag and prints `rank R: got SIGUSR1` once per
signal. At the next step the ranks agree (all_reduce MAX of the flag) to stop at the same
step: rank 0 writes CKPT/ckpt.pt (model, optimiser, next step), every rank prints
`rank R: checkpointed at step S` and exits 75. An attempt with a checkpoint resumes from
it and prints `rank R: resumed at step S (MCOMPILE_RESTART=…)`. At the end every rank
writes OUT/result-<RANK>.json: what it saw (ranks, node, environment), the steps it ran
in this attempt, and a checksum of the parameters (the same on every rank under DDP).

    ddp_train.py --steps N [--step-seconds S] [--resumed-step-seconds S] [--out DIR] [--ckpt DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

signalled = 0


def on_usr1(signum: int, frame: object) -> None:
    global signalled
    signalled += 1
    print(f"rank {os.environ.get('RANK')}: got SIGUSR1", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--step-seconds", type=float, default=0.5)
    parser.add_argument("--resumed-step-seconds", type=float, default=None, help="the step time once resumed")
    parser.add_argument("--out", default="/scratch_storage")
    parser.add_argument("--ckpt", default="/scratch_storage")
    args = parser.parse_args()
    signal.signal(signal.SIGUSR1, on_usr1)

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(8, 1))
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    ckpt = Path(args.ckpt) / "ckpt.pt"
    start = 0
    if ckpt.exists():
        state = torch.load(ckpt, weights_only=True)
        model.module.load_state_dict(state["model"])
        optimiser.load_state_dict(state["optimiser"])
        start = state["step"]
        print(f"rank {rank}: resumed at step {start} (MCOMPILE_RESTART={os.environ.get('MCOMPILE_RESTART')})", flush=True)
        if args.resumed_step_seconds is not None:
            args.step_seconds = args.resumed_step_seconds

    generator = torch.Generator().manual_seed(rank)
    ran = []
    for step in range(start, args.steps):
        stop = torch.tensor([1 if signalled else 0])
        dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        if stop.item():
            if rank == 0:
                torch.save({"model": model.module.state_dict(), "optimiser": optimiser.state_dict(), "step": step},
                           str(ckpt) + ".tmp")
                os.replace(str(ckpt) + ".tmp", ckpt)
            dist.barrier()
            print(f"rank {rank}: checkpointed at step {step}", flush=True)
            dist.destroy_process_group()
            return 75
        x = torch.randn(16, 8, generator=generator)
        loss = (model(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        ran.append(step)
        print(f"rank {rank}: step {step}", flush=True)
        time.sleep(args.step_seconds)

    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    names = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE",
             "MASTER_ADDR", "MASTER_PORT", "SLURMD_NODENAME", "SLURM_PROCID", "MCOMPILE_RESTART", "MCOMPILE_TASK")
    result = {"rank": rank, "world_size": world, "node": os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
              "env": {n: os.environ.get(n) for n in names}, "ran": ran, "first_step": start,
              "checksum": checksum, "signals": signalled, "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"result-{rank}.json").write_text(json.dumps(result, indent=1))
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
