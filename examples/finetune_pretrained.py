"""Fine-tune a pretrained torchvision network (ResNet-18 by default) on a folder of your own images
or on CIFAR-10, with the course's Trainer.

    .venv/bin/python examples/finetune_pretrained.py --demo --weights none --size 64 --epochs 2   # offline check
    .venv/bin/python examples/finetune_pretrained.py --folder path/to/my_images                  # your images
    .venv/bin/python examples/finetune_pretrained.py --domain cifar10 --download --channels-last --compile

The weights are downloaded once into ``$TORCH_HOME/hub/checkpoints``; offline, the script stops
at once and names the offline alternative (``--weights none``: random initialisation).
``--demo`` writes a tiny folder of synthetic images (two classes) to a temporary directory, to
check the whole path without data.  ``--probe`` trains the head alone (linear probe: the
BatchNorm statistics stay the pretrained ones); by default every layer is fine-tuned, with
discriminative learning rates.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from transferlab.data import load_domain, load_folder
from transferlab.data.folder import write_demo_folder
from transferlab.finetune import discriminative_lr_groups, linear_probe
from transferlab.models import WeightsUnavailableError, pretrained_backbone
from transferlab.models.backbones import ARCHS
from transferlab.train import Trainer, seed_everything


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    data = parser.add_mutually_exclusive_group(required=True)
    data.add_argument("--folder", help="a folder with one sub-folder of images per class (ImageFolder layout)")
    data.add_argument("--domain", choices=("cifar10", "svhn", "mnist", "usps"), help="a torchvision data set")
    data.add_argument("--demo", action="store_true", help="a tiny synthetic folder written to a temporary directory")
    parser.add_argument("--download", action="store_true", help="download --domain (needs internet)")
    parser.add_argument("--arch", default="resnet18", choices=ARCHS)
    parser.add_argument("--weights", default="DEFAULT", help="a weights name of --arch (DEFAULT, IMAGENET1K_V1, ...) or none")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the weights' 224)")
    parser.add_argument("--probe", action="store_true", help="train the head alone (linear probe)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head")
    parser.add_argument("--workers", type=int, default=4, help="DataLoader workers for images read from disk")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA too")
    parser.add_argument("--channels-last", action="store_true",
                        help="NHWC memory layout (the Trainer uses it for convolutional networks anyway)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the forward pass")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    seed_everything(args.seed)
    weights = None if args.weights.lower() == "none" else args.weights
    with tempfile.TemporaryDirectory() as tmp:
        if args.demo:
            args.folder = str(write_demo_folder(Path(tmp) / "demo"))
        num_classes = None if args.domain is None else 10
        if num_classes is None:
            num_classes = sum(1 for p in Path(args.folder).iterdir() if p.is_dir()) if Path(args.folder).is_dir() else 2
        try:
            model = pretrained_backbone(args.arch, num_classes, weights, input_size=args.size)
        except WeightsUnavailableError as exc:
            print(f"error: {exc}\nOffline, run the same command with --weights none.", file=sys.stderr)
            return 2
        if args.domain is not None:
            domain = load_domain(args.domain, download=args.download, transform=model.transforms())
        else:
            domain = load_folder(args.folder, model.transforms())
        if args.probe:
            linear_probe(model)
            params = [p for p in model.parameters() if p.requires_grad]
        else:
            params = discriminative_lr_groups(model, args.lr, decay=0.5)
        trainer = Trainer(model, lr=args.lr, params=params, batch_size=args.batch_size, device=args.device,
                          amp=not args.no_amp, channels_last=args.channels_last or None, compile=args.compile,
                          num_workers=args.workers,
                          seed=args.seed)
        history = trainer.fit(domain.train, domain.val, epochs=args.epochs)
    print(f"{args.arch} ({weights or 'random init'}) on {domain.name} ({domain.num_classes} classes, "
          f"{len(domain.train)} training images) on {trainer.device}, amp {trainer.amp_dtype}: "
          f"val acc {history['val_acc'][-1]:.3f} after {trainer.epoch} epochs, "
          f"{history['images_per_s'][-1]:.0f} images/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
