"""The network: a Transformer encoder autoencoder over short windows of consecutive packets.

Each packet is one token: its scaled numeric inputs go through a linear layer, each of its
categorical codes (protocol, TCP flags, port classes, ...) through an embedding table, and the
sum plus a learned position embedding enters a small Transformer encoder. Attention lets a
packet be read in the company of its neighbours in the stream. Every token is then squeezed
through a narrow per-token bottleneck (``latent`` numbers for ``n_numeric + n_categorical``
inputs), so the network cannot simply copy its input, and decoded back to a reconstruction of
that packet: numeric values (squared error) and categorical codes (cross-entropy).

The per-input reconstruction error is what the detector scores and explains. No file or device
I/O here; the checkpoint module stores :class:`ModelConfig` so loading rebuilds the network
before ``load_state_dict``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

# Categorical errors are read against a mixture of the network's distribution with the value's
# share of training traffic, weighted PRIOR_WEIGHT: a value seen in training then costs at most
# -log(PRIOR_WEIGHT * share) nats, however sure the network was of another one. A rare but
# normal value the bottleneck never learned to reproduce (an IPv6 router-alert option on an MLD
# report) is no more surprising than its rarity; a value never seen in training keeps the
# network's full surprise (a malformed ICMP type).
PRIOR_WEIGHT = math.exp(-5.0)


@dataclass
class ModelConfig:
    n_numeric: int = 16  # scaled numeric inputs per packet (set from the data)
    vocab_sizes: tuple[int, ...] = (8, 513)  # one embedding table per categorical field
    window: int = 16  # packets per tumbling window (the attention span)
    d_model: int = 32  # token width; 32 keeps scoring near 1M packets/s on 2 cores
    n_head: int = 4  # attention heads; d_model must divide by it
    n_layer: int = 2  # encoder layers
    d_ff: int = 64  # feed-forward width inside each layer
    latent: int = 8  # per-packet bottleneck width, well below the number of inputs
    dropout: float = 0.1  # used in training only
    # per categorical field, the least training share any of its values counts as (0: none);
    # see PacketAutoencoder.errors
    share_floor: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.vocab_sizes = tuple(int(v) for v in self.vocab_sizes)
        self.share_floor = tuple(float(v) for v in self.share_floor)
        assert not self.share_floor or len(self.share_floor) == len(self.vocab_sizes)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Reconstruction:
    numeric: torch.Tensor  # [B, T, n_numeric] reconstructed scaled values
    logits: torch.Tensor  # [B, T, total_vocab]: field i's logits at offsets[i] onwards


class PacketAutoencoder(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        assert config.d_model % config.n_head == 0, "d_model must be a multiple of n_head"
        assert 0 < config.latent < config.n_numeric + len(config.vocab_sizes), \
            "the bottleneck must be narrower than the input"
        assert config.window >= 1
        self.config = config
        d = config.d_model
        self.numeric_in = nn.Linear(config.n_numeric, d)
        # all categorical fields share one table; field i's codes start at offsets[i]
        vocab = torch.tensor(config.vocab_sizes)
        offsets = torch.cumsum(vocab, 0) - vocab  # [n_fields]
        self.register_buffer("offsets", offsets, persistent=False)
        self.embedding = nn.Embedding(int(vocab.sum()), d)
        # log share of each code in training traffic (-inf: never seen), set by set_code_prior
        self.register_buffer("code_log_prior", torch.zeros(int(vocab.sum())))
        floors = config.share_floor or (0.0,) * len(config.vocab_sizes)
        with np.errstate(divide="ignore"):
            log_floor = np.repeat(np.log(np.asarray(floors)), config.vocab_sizes)
        self.register_buffer("code_log_floor", torch.from_numpy(log_floor).float(),
                             persistent=False)
        # [total_vocab, n_fields]: 1 where a code belongs to a field (sums each field's logits)
        members = torch.zeros(int(vocab.sum()), len(config.vocab_sizes))
        for f, (o, v) in enumerate(zip(offsets.tolist(), config.vocab_sizes, strict=True)):
            members[o:o + v, f] = 1.0
        self.register_buffer("members", members, persistent=False)
        self.position = nn.Parameter(torch.zeros(config.window, d))
        layer = nn.TransformerEncoderLayer(
            d, config.n_head, config.d_ff, config.dropout, activation="gelu", batch_first=True,
            norm_first=False,
        )
        self.encoder = nn.TransformerEncoder(layer, config.n_layer, enable_nested_tensor=False)
        self.to_latent = nn.Linear(d, config.latent)
        self.from_latent = nn.Sequential(nn.Linear(config.latent, d), nn.GELU())
        # one head for every numeric value and every categorical logit, split afterwards
        self.out = nn.Linear(d, config.n_numeric + int(vocab.sum()))
        self.fields = list(zip(offsets.tolist(), config.vocab_sizes, strict=True))
        nn.init.normal_(self.position, std=0.02)

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor,
                pad: torch.Tensor | None = None) -> Reconstruction:
        """numeric float [B, T, n_numeric], codes long [B, T, n_fields], pad bool [B, T]
        (True = padding, ignored by attention) -> reconstruction of every token."""
        B, T, _ = numeric.shape
        assert self.config.window >= T and codes.shape == (B, T, len(self.config.vocab_sizes))
        x = self.numeric_in(numeric)  # [B, T, d]
        # the fields' embeddings summed in one gather: [B * T, n_fields] codes -> [B * T, d]
        bag = nn.functional.embedding_bag((codes + self.offsets).reshape(B * T, -1),
                                          self.embedding.weight, mode="sum")
        x = x + bag.view(B, T, -1)  # [B, T, d]
        x = x + self.position[:T]
        x = self.encoder(x, src_key_padding_mask=pad)  # [B, T, d]
        z = torch.tanh(self.to_latent(x))  # [B, T, latent]: the bottleneck
        h = self.from_latent(z)  # [B, T, d]
        y = self.out(h)  # [B, T, n_numeric + total_vocab]
        n = self.config.n_numeric
        return Reconstruction(y[..., :n], y[..., n:])

    def losses(self, numeric: torch.Tensor, codes: torch.Tensor,
               pad: torch.Tensor | None = None,
               target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-input training loss [B, T, n_numeric + n_fields]: squared error of each numeric
        input, then cross-entropy of each categorical field. ``target`` [B, T, n_numeric] is
        what the numeric part should reconstruct (default: ``numeric``); the detector feeds
        inputs clamped to the training range and targets clipped only at the scaler's
        +-clip, so a value beyond anything seen in training costs its distance up to there."""
        rec = self(numeric, codes, pad)
        target = numeric if target is None else target
        assert target.shape == numeric.shape
        sq = (rec.numeric - target) ** 2  # [B, T, n_numeric]
        logits = rec.logits.contiguous()  # a view into the head's output; slices read faster
        lse = self._field_logsumexp(logits)  # [B, T, n_fields]
        picked = logits.gather(-1, codes + self.offsets)  # [B, T, n_fields]
        return torch.cat([sq, lse - picked], dim=2)  # cross-entropy = logsumexp - picked

    def errors(self, numeric: torch.Tensor, codes: torch.Tensor,
               pad: torch.Tensor | None = None,
               target: torch.Tensor | None = None) -> torch.Tensor:
        """Per-input reconstruction error as the detector reads it: :meth:`losses`, with each
        categorical cross-entropy turned back into the inverse of the probability the value
        has (``exp``, capped at ``exp(80)``) under the network mixed with the training prior
        (see PRIOR_WEIGHT). The detector reads errors on a log scale, so a categorical input's
        surprise then grows linearly in nats past its tail, and a value never seen counts for
        the improbability it is."""
        rec = self(numeric, codes, pad)
        target = numeric if target is None else target
        idx = codes + self.offsets  # [B, T, n_fields]
        # each code's probability at once: all logits against the row's largest, one exp,
        # summed per field by a product with the field-membership matrix (8 logsumexps cost
        # as much as the rest of the network after it)
        top = rec.logits.amax(dim=-1, keepdim=True)  # [B, T, 1]
        e = torch.exp(rec.logits - top)  # [B, T, total_vocab]
        picked = e.gather(-1, idx)  # [B, T, n_fields]
        prob = picked / (e @ self.members)  # [B, T, n_fields]
        log_prior = torch.maximum(self.code_log_prior, self.code_log_floor)  # [total_vocab]
        share = torch.exp(log_prior[idx])  # [B, T, n_fields]
        err = ((1.0 - PRIOR_WEIGHT) * prob + PRIOR_WEIGHT * share).reciprocal_()
        # float32 ends near 1e-38: a code 70 nats below the row's top has its own cross-entropy
        lost = (picked < 1e-30).any(dim=-1)  # [B, T]
        if bool(lost.any()):
            logits = rec.logits[lost]  # [m, total_vocab]
            ce = self._field_logsumexp(logits) - logits.gather(-1, idx[lost])  # [m, n_fields]
            err[lost] = torch.exp(-torch.logaddexp(math.log1p(-PRIOR_WEIGHT) - ce,
                                                   math.log(PRIOR_WEIGHT)
                                                   + log_prior[idx[lost]]))
        sq = (rec.numeric - target) ** 2  # [B, T, n_numeric]
        return torch.cat([sq, err.clamp_(max=math.exp(80.0))], dim=2)

    def _field_logsumexp(self, logits: torch.Tensor) -> torch.Tensor:
        """logits [..., total_vocab] -> [..., n_fields]: each field's logsumexp."""
        return torch.stack([torch.logsumexp(logits[..., o:o + v], dim=-1)
                            for o, v in self.fields], dim=-1)

    def set_code_prior(self, codes: np.ndarray) -> None:
        """Learn each categorical value's share of training traffic from ``codes`` [n, n_fields]
        (the training packets' codes)."""
        shares = []
        for f, (_, size) in enumerate(self.fields):
            counts = np.bincount(codes[:, f], minlength=size)[:size].astype(np.float64)
            with np.errstate(divide="ignore"):
                shares.append(np.log(counts / max(counts.sum(), 1.0)))
        self.code_log_prior.copy_(torch.from_numpy(np.concatenate(shares)))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


class SinglePacketAutoencoder(nn.Module):
    """The seed's approach, rebuilt for the baseline: the 8 per-packet fields, each one token,
    a Transformer encoder over those 8 tokens, reconstructing the 8 values (one packet per
    sequence, no context, no categorical handling)."""

    def __init__(self, n_fields: int = 8, d_model: int = 32, n_head: int = 4,
                 n_layer: int = 2) -> None:
        super().__init__()
        self.value_in = nn.Linear(1, d_model)
        self.position = nn.Parameter(torch.randn(n_fields, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model, n_head, 64, 0.1, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.out = nn.Linear(d_model, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x float [B, 8] -> reconstruction [B, 8]."""
        h = self.value_in(x.unsqueeze(-1)) + self.position  # [B, 8, d]
        return self.out(self.encoder(h)).squeeze(-1)  # [B, 8]


def to_windows(rows: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows [n, ...] zero-padded to whole tumbling windows: ([W, T, ...], padding [W, T]).

    >>> w, pad = to_windows(np.ones((5, 2)), 4)
    >>> w.shape, pad.sum().item()
    ((2, 4, 2), 3)
    """
    n = len(rows)
    m = -(-n // window) * window  # padded length, a multiple of the window
    out = np.zeros((m, *rows.shape[1:]), rows.dtype)
    out[:n] = rows
    pad = np.zeros(m, bool)
    pad[n:] = True
    return out.reshape(m // window, window, *rows.shape[1:]), pad.reshape(m // window, window)
