"""Turning token-id lists into padded tensors, shortest-first when asked."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pad_batch(id_lists: Sequence[Sequence[int]],
              device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """[[ids]] → (ids [B, T], mask [B, T]); an empty document becomes a single <unk> so every row
    has something to attend to."""
    rows = [list(ids) if len(ids) else [1] for ids in id_lists]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return ids.to(device), (ids != 0).to(device)


def length_chunks(lengths: Sequence[int], batch_size: int, length_aware: bool = True) -> list[list[int]]:
    """Index chunks of at most batch_size; sorted by length first so each chunk pads little."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i]) if length_aware else list(range(len(lengths)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
