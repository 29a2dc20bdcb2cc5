"""Batches and augmentation: which examples each iteration trains on, drawn statelessly from
the seed and the iteration (a resumed run sees exactly the batches an uninterrupted one
would, with no saved sampler state), and CIFAR's crop-and-flip augmentation.
"""

from __future__ import annotations

import functools

import torch


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def batch_indices(n: int, batch_size: int, iteration: int, seed: int) -> torch.Tensor:
    """Example indices of the batch at 0-based ``iteration``: epochs of a fresh seeded
    permutation, the last partial batch of each epoch dropped (every batch is full).
    Stateless, so a resumed run sees exactly the batches an uninterrupted one would.

    >>> batch_indices(10, 4, 0, seed=0).tolist() == batch_indices(10, 4, 0, seed=0).tolist()
    True
    >>> len(set(batch_indices(10, 5, 0, 1).tolist() + batch_indices(10, 5, 1, 1).tolist()))
    10
    """
    batch_size = min(batch_size, n)
    per_epoch = n // batch_size
    epoch, pos = divmod(iteration, per_epoch)
    return _epoch_permutation(n, seed, epoch)[pos * batch_size:(pos + 1) * batch_size]


def balanced_batch_indices(labels: torch.Tensor, batch_size: int, iteration: int, seed: int,
                           classes_per_batch: int | None = None) -> torch.Tensor:
    """A class-balanced batch by (noisy) label, stateless like ``batch_indices`` (drawn from a
    generator seeded by ``seed`` and ``iteration``).

    Without ``classes_per_batch``: ``batch_size // C`` examples of every present class (with
    replacement), topped up at random. With it, as the authors' CIFAR-100 runs draw batches
    (32 classes x 8 images): that many classes chosen at random, ``batch_size //
    classes_per_batch`` distinct examples of each (with replacement only for a class that has
    fewer), topped up from those classes.

    >>> labels = torch.tensor([0] * 5 + [1] * 5 + [2] * 5 + [3] * 5)
    >>> idx = balanced_batch_indices(labels, 6, iteration=0, seed=0, classes_per_batch=2)
    >>> sorted(torch.bincount(labels[idx], minlength=4).tolist())
    [0, 0, 3, 3]
    """
    gen = torch.Generator().manual_seed(seed * 1_000_003 + 7_919 * iteration + 1)
    classes = torch.unique(labels)
    if classes_per_batch is not None:
        classes = classes[torch.randperm(len(classes), generator=gen)[:classes_per_batch]]
    per_class = max(1, batch_size // len(classes))
    picks = []
    for c in classes.tolist():
        members = torch.nonzero(labels == c).squeeze(1)
        if classes_per_batch is not None and len(members) >= per_class:
            picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
        else:
            picks.append(members[torch.randint(len(members), (per_class,), generator=gen)])
    out = torch.cat(picks)
    if len(out) < batch_size:
        pool = torch.arange(len(labels)) if classes_per_batch is None else torch.nonzero(
            torch.isin(labels, classes)).squeeze(1)
        out = torch.cat([out, pool[torch.randint(len(pool), (batch_size - len(out),), generator=gen)]])
    return out[torch.randperm(len(out), generator=gen)][:batch_size]


def augment_batch(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch: zero-pad ``pad``, random crop back, random
    horizontal flip. Vectorised and device-agnostic; draws from ``generator`` (or the global
    RNG, which checkpoints save) so runs are reproducible. Non-image inputs pass unchanged.

    >>> x = torch.arange(2 * 1 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    >>> augment_batch(x, torch.Generator().manual_seed(0), pad=1).shape
    torch.Size([2, 1, 4, 4])
    """
    if x.dim() != 4:
        return x
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator).to(x.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = ox[:, None] + torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


__all__ = ["augment_batch", "balanced_batch_indices", "batch_indices"]
