"""Full fine-tuning on a condition's adaptation data: the upper bound a seed is compared with."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from kasmina_edge.host.data import ConditionSplit, to_tensors
from kasmina_edge.host.model import BeatClassifier
from kasmina_edge.host.train import class_weights, evaluate


def fine_tune(
    base: BeatClassifier, split: ConditionSplit, epochs: int, lr: float, batch_size: int, seed: int, min_support: int = 25
) -> BeatClassifier:
    """The upper bound: every host weight trained on the same adaptation data (best epoch on val)."""
    from kasmina_edge.host.train import train_epoch

    model = copy.deepcopy(base)
    params = model.host_parameters()
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    loss_fn = nn.CrossEntropyLoss(weight=class_weights(np.asarray(split.adapt.labels), n_classes=base.config.n_classes))
    data = to_tensors(split.adapt)
    best, best_state = evaluate(model, split.val).macro_f1_at(min_support), copy.deepcopy(model.state_dict())
    for epoch in range(epochs):
        train_epoch(model, opt, data, loss_fn, batch_size=batch_size, seed=seed, epoch=epoch, params=params)
        f1 = evaluate(model, split.val).macro_f1_at(min_support)
        if f1 > best:
            best, best_state = f1, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    model.eval()
    return model
