"""Per-step statistics, computed on the model's device in float32 (units: nats).

Only small results leave the device: `pack_step` puts the chosen id, its log-prob, entropy, rank,
sampler log-prob and the top-k into ONE tensor, so each step costs one host transfer.
"""

from __future__ import annotations

import torch


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of distributions given as log-probabilities along the last dim."""
    return -(logp.exp() * logp).sum(-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) straight from finite logits [N, V]: log Z − E_p[x], in two passes over them
    (no log-softmax, no p·log p temporaries), which matters for the lens's [chunk·L, V] block."""
    m = logits.amax(-1, keepdim=True)
    e = (logits - m).exp_()
    z = e.sum(-1)
    return m[:, 0] + z.log() - torch.linalg.vecdot(e, logits) / z


def pack_step(logp: torch.Tensor, chosen: torch.Tensor, k: int, sampler_logprob: torch.Tensor) -> torch.Tensor:
    """[V] log-probs + chosen id → [5 + 2k] float32: id, logprob, entropy, rank, sampler, ids, lps.

    Ids are exact in float32 below 2**24, far above any vocabulary."""
    lp = logp[chosen]
    rank = (logp > lp).sum() + 1
    top_lp, top_id = logp.topk(k)
    head = torch.stack([chosen.float(), lp, entropy(logp), rank.float(), sampler_logprob.float()])
    return torch.cat([head, top_id.float(), top_lp])


def lens_entropy(lens, hidden: torch.Tensor, max_elements: int = 1 << 27) -> torch.Tensor:
    """Logit-lens entropies of hidden states [N, d] → [N], in as few matmuls as memory allows."""
    n = hidden.shape[0]
    if n == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    vocab = lens.weight.shape[0]
    rows = max(1, max_elements // vocab)
    out = [entropy_from_logits(lens.logits(hidden[i : i + rows])) for i in range(0, n, rows)]
    return torch.cat(out)


def score_positions(logits: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Teacher-forced stats: logits [n, V] predict targets [n]; all positions at once."""
    logp = torch.log_softmax(logits.float(), -1)
    lp = logp.gather(-1, targets[:, None])[:, 0]
    rank = (logp > lp[:, None]).sum(-1) + 1
    top_lp, top_id = logp.topk(k, dim=-1)
    return {"logprob": lp, "entropy": entropy(logp), "rank": rank, "topk_ids": top_id, "topk_logprobs": top_lp}
