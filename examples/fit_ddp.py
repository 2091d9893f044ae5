"""Train the course's CNN on the handwritten digits: in one process, or in several under torchrun.

    .venv/bin/python examples/fit_ddp.py                                   # one process
    .venv/bin/torchrun --standalone --nproc_per_node 2 examples/fit_ddp.py  # two processes

The script is the same: ``Trainer`` sees the variables ``torchrun`` sets (``RANK``,
``LOCAL_RANK``, ``WORLD_SIZE``), joins the process group (NCCL on CUDA GPUs, gloo on the CPU),
wraps the model in ``DistributedDataParallel`` and gives each process its slice of every global
batch of ``--batch-size × processes`` images.  Rank 0 alone prints and writes the checkpoint.
"""

from __future__ import annotations

import argparse

from transferlab.data import load_domain
from transferlab.models import SmallCNN
from transferlab.train import Trainer, distributed, seed_everything


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per process and step (the global batch is this times the processes)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default="runs/fit_ddp.pt", help="written after every epoch")
    parser.add_argument("--resume", action="store_true", help="continue from --checkpoint if it exists")
    args = parser.parse_args(argv)

    target = load_domain("handwritten")
    seed_everything(args.seed)  # every rank builds the same initial weights
    trainer = Trainer(SmallCNN(), lr=args.lr, batch_size=args.batch_size, seed=args.seed)
    trainer.fit(target.train, target.val, epochs=args.epochs, checkpoint=args.checkpoint, resume=args.resume)
    if trainer.ranks.is_main:
        print(f"{trainer.ranks.world} process(es) on {trainer.device}, global batch "
              f"{args.batch_size * trainer.ranks.world}: target-val accuracy {trainer.history['val_acc'][-1]:.3f} "
              f"after {trainer.epoch} epochs; checkpoint {args.checkpoint}")
    distributed.shutdown()


if __name__ == "__main__":
    main()
