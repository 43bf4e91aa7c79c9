"""Rank-0 training log: ``logging`` for text, TensorBoard for scalars and image grids."""
from __future__ import annotations

import logging
from pathlib import Path

import torch


log = logging.getLogger('train')


class TrainLogger:
    """Writes to TensorBoard when ``log_dir`` is given (rank 0 of a named run); otherwise text only."""

    def __init__(self, log_dir: str | Path | None) -> None:
        self.writer = None
        if log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: slow, and only rank 0 needs it
            self.writer = SummaryWriter(str(log_dir))

    def scalars(self, values: dict[str, float], iteration: int, prefix: str = '') -> None:
        for key, value in values.items():
            if self.writer:
                self.writer.add_scalar(prefix + key, value, iteration)
        shown = ', '.join(f'{k}={v:.4g}' for k, v in values.items() if '[' not in k)
        log.info('it %d %s%s', iteration, prefix, shown)

    def images(self, columns: list[torch.Tensor], iteration: int, count: int = 4) -> None:
        """One row per sample, one column per tensor (each B x 1|3 x H x W in [0, 1], as a method's recipe
        gives them)."""
        if not self.writer:
            return
        n = min(count, columns[0].shape[0])
        columns = [c[:n].detach().float().cpu().expand(n, 3, *c.shape[-2:]) for c in columns]
        grid = torch.cat([torch.cat(list(row), dim=2) for row in zip(*columns)], dim=1)  # 3 x nH x (columns * W)
        self.writer.add_image('train/samples', grid, iteration)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
