#!/usr/bin/env python3
"""A real Lightning DDP fit (CPU, gloo) under srun: what SLURMEnvironment makes of the job.

One process per SLURM task (launcher srun). Lightning's SLURMEnvironment reads SLURM_PROCID,
SLURM_LOCALID, SLURM_NODEID, SLURM_NTASKS and the node list; auto-requeue is off (mcompile
requeues). The model trains a few steps on this rank's shard; then every rank writes
OUT/lightning-<global_rank>.json with the ranks Lightning chose, its cluster environment and
main address/port, and a checksum of the trained parameters (equal on every rank under DDP).
The ranks then leave the process group together (barrier, destroy_process_group).

    lightning_ranks.py --nodes N --devices K [--steps S] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.environments import SLURMEnvironment


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (x,) = batch
        return (self.layer(x) - x.sum(dim=1, keepdim=True)).pow(2).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", default="/scratch_storage")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(64, 8))
    environment = SLURMEnvironment(auto_requeue=False)
    trainer = L.Trainer(accelerator="cpu", devices=args.devices, num_nodes=args.nodes, strategy="ddp",
                        plugins=[environment], max_steps=args.steps, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    model = Tiny()
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    checksum = float(sum(p.detach().double().sum() for p in model.parameters()))
    env = trainer.strategy.cluster_environment
    result = {"global_rank": trainer.global_rank, "local_rank": trainer.local_rank, "node_rank": trainer.node_rank,
              "world_size": trainer.world_size, "environment": type(env).__name__,
              "main_address": env.main_address, "main_port": env.main_port, "checksum": checksum,
              "steps": trainer.global_step, "node": os.environ.get("SLURMD_NODENAME"),
              "master_port_env": os.environ.get("MASTER_PORT")}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"lightning-{trainer.global_rank}.json").write_text(json.dumps(result, indent=1))
    # Leave the group together: a rank that exits while gloo still tears down a peer's pair can
    # abort that peer ("terminate called without an active exception", exit 134).
    if torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
