"""Test-set metrics of predicted class probabilities: accuracy, NLL, calibration, entropy."""

from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.nn import functional as F

from dwlab.app.data import ImageData, eval_batches


def classification_metrics(probs: torch.Tensor, labels: torch.Tensor, bins: int = 15
                           ) -> dict[str, float]:
    """Accuracy, negative log-likelihood, expected calibration error (``bins`` equal-width
    confidence bins) and mean predictive entropy (nats) of predicted class probabilities."""
    probs = probs.double()
    labels = labels.to(probs.device)
    confidence, predicted = probs.max(dim=1)
    correct = predicted.eq(labels).double()
    nll = -probs.gather(1, labels[:, None]).squeeze(1).clamp_min(1e-12).log()
    entropy = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
    edges = torch.linspace(0, 1, bins + 1, dtype=probs.dtype, device=probs.device)
    which = torch.bucketize(confidence, edges[1:-1], right=False)
    ece = torch.zeros((), dtype=probs.dtype, device=probs.device)
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            gap = (correct[in_bin].mean() - confidence[in_bin].mean()).abs()
            ece += in_bin.double().mean() * gap
    return {"accuracy": correct.mean().item(), "nll": nll.mean().item(),
            "ece": ece.item(), "entropy": entropy.mean().item()}


@torch.no_grad()
def predict_probs(model: nn.Module, data: ImageData, batch_size: int, device: torch.device,
                  bf16: bool = False, channels_last: bool = False) -> torch.Tensor:
    """Softmax outputs for the test set (CPU tensor, float32)."""
    was_training = model.training
    model.eval()
    out = []
    for x, _ in eval_batches(data, batch_size, device):
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, bf16):
            logits = model(x)
        out.append(F.softmax(logits.float(), dim=1).cpu())
    model.train(was_training)
    return torch.cat(out)


def bf16_emulated(device: torch.device) -> bool:
    """Whether bf16 autocast on ``device`` would run without native bf16 arithmetic: on a
    CPU without AVX512-BF16 or AMX, oneDNN emulates it (measured on an AVX2 CPU, ResNet18
    width 8, batch 128: forward+backward 2.0 s against 0.26 s in float32)."""
    return device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported()


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager:
    """bf16 autocast of the forward pass when asked for, else nothing."""
    if bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
