"""Per-epoch training history that plots in one call."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Columns that are not learning curves (``plot`` leaves them out unless asked for).
NOT_CURVES = ("epoch", "images_per_s")


@dataclass
class History:
    """One record (a dict of floats) per epoch: ``history["val_acc"]`` is that column as a list."""

    records: list[dict[str, float]] = field(default_factory=list)

    def append(self, record: dict[str, float]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: str) -> list[float]:
        if not self.records or key not in self.keys():
            raise KeyError(f"no metric {key!r} in this history; it has {sorted(self.keys())}")
        return [r.get(key, float("nan")) for r in self.records]

    def keys(self) -> list[str]:
        seen: dict[str, None] = {}
        for r in self.records:
            seen.update(dict.fromkeys(r))
        return list(seen)

    @property
    def last(self) -> dict[str, float]:
        return self.records[-1] if self.records else {}

    def plot(self, metrics: list[str] | None = None, axes=None):
        """Learning curves: losses on the left panel, accuracies on the right.

        Returns the matplotlib ``Figure``.
        """
        import matplotlib.pyplot as plt

        keys = (
            [k for k in metrics if k != "epoch"]
            if metrics
            else [k for k in self.keys() if k not in NOT_CURVES]
        )
        groups = [[k for k in keys if "acc" not in k], [k for k in keys if "acc" in k]]
        groups = [g for g in groups if g]
        if axes is None:
            fig, axes = plt.subplots(
                1, len(groups), figsize=(4.5 * len(groups), 3.2), squeeze=False
            )
            axes = axes[0]
        else:
            fig = axes[0].figure
        epochs = self["epoch"] if "epoch" in self.keys() else list(range(1, len(self) + 1))
        for ax, group in zip(axes, groups):
            for k in group:
                ax.plot(epochs, self[k], marker="o", ms=3, label=k)
            ax.set_xlabel("epoch")
            ax.set_ylabel("accuracy" if "acc" in group[0] else "loss")
            ax.legend()
            ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig
