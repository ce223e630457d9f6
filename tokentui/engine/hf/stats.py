"""Per-step statistics, computed on the model's device in float32 (units: nats).

Only small results leave the device: `pack_step` puts the chosen id, its log-prob, entropy, rank,
sampler log-prob and the top-k into ONE tensor, so each step costs one host transfer.
"""

from __future__ import annotations

import torch


def entropy(logp: torch.Tensor) -> torch.Tensor:
    """Entropy (nats) of distributions given as log-probabilities along the last dim."""
    return -(logp.exp() * logp).sum(-1)


def pack_step(logp: torch.Tensor, chosen: torch.Tensor, k: int, sampler_logprob: torch.Tensor) -> torch.Tensor:
    """[V] log-probs + chosen id → [5 + 2k] float32: id, logprob, entropy, rank, sampler, ids, lps.

    Ids are exact in float32 below 2**24, far above any vocabulary."""
    lp = logp[chosen]
    rank = (logp > lp).sum() + 1
    top_lp, top_id = logp.topk(k)
    head = torch.stack([chosen.float(), lp, entropy(logp), rank.float(), sampler_logprob.float()])
    return torch.cat([head, top_id.float(), top_lp])


def lens_entropy(lens, hidden: torch.Tensor, block_elements: int = 1 << 21, max_rows: int = 1024) -> torch.Tensor:
    """Logit-lens entropies of hidden states [N, d] → [N] (nats).

    The [N, V] logits are never built whole: each block of rows is projected onto slices of the
    vocabulary small enough to stay in cache (~8 MB of float32), and the entropy is accumulated
    across slices online (running max, Σ e^(x−m), Σ e^(x−m)·x, as in log Z − E_p[x]). The
    unembedding is still read once per block of rows, so a chunk of buffered positions costs one
    pass over it instead of materialising hundreds of MB of logits (which made chunking slower than
    lensing every step on a 152k vocabulary).
    """
    n = hidden.shape[0]
    if n == 0:
        return hidden.new_zeros(0, dtype=torch.float32)
    vocab = lens.weight.shape[0]
    out = []
    for r in range(0, n, max_rows):
        normed = lens.normed(hidden[r : r + max_rows])
        cols = max(512, block_elements // normed.shape[0])
        m_run = z_run = s_run = None
        for c in range(0, vocab, cols):
            logits = lens.project(normed, c, c + cols)
            m = logits.amax(-1)
            e = (logits - m[:, None]).exp_()
            z, s = e.sum(-1), torch.linalg.vecdot(e, logits)
            if m_run is None:
                m_run, z_run, s_run = m, z, s
                continue
            top = torch.maximum(m_run, m)
            a, b = (m_run - top).exp(), (m - top).exp()
            m_run, z_run, s_run = top, z_run * a + z * b, s_run * a + s * b
        out.append(m_run + z_run.log() - s_run / z_run)
    return torch.cat(out)


def score_positions(logits: torch.Tensor, targets: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Teacher-forced stats: logits [n, V] predict targets [n]; all positions at once."""
    logp = torch.log_softmax(logits.float(), -1)
    lp = logp.gather(-1, targets[:, None])[:, 0]
    rank = (logp > lp[:, None]).sum(-1) + 1
    top_lp, top_id = logp.topk(k, dim=-1)
    return {"logprob": lp, "entropy": entropy(logp), "rank": rank, "topk_ids": top_id, "topk_logprobs": top_lp}
