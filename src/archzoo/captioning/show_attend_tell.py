"""Show, Attend and Tell — Xu, Ba, Kiros, Cho, Courville, Salakhutdinov, Zemel & Bengio, ICML 2015,
arXiv:1502.03044: image captioning with visual attention.

A convolutional encoder turns the image into ``L = H * W`` annotation vectors ``a_i`` (a feature
map, unpooled). A recurrent decoder writes the caption one word per step; at step ``t`` a soft
attention unit (Bahdanau et al. 2014, arXiv:1409.0473) scores every location against the previous
state, ``e_ti = w^T tanh(W_a a_i + W_h h_{t-1})``, ``alpha_t = softmax(e_t)``, and the context
``z_t = beta_t * sum_i alpha_ti a_i`` is fed to the step with the previous word's embedding; the
gate ``beta_t = sigmoid(f_beta(h_{t-1}))`` (section 4.2.1) lets the decoder decide how much to
look. The word's distribution is the paper's deep output, ``p(y_t) ~ exp(L_o(E y_{t-1} + L_h h_t +
L_z z_t))`` (eq. 7); the first state is an MLP of the mean annotation (eq. 5-6). Training is
teacher forcing with the doubly stochastic penalty ``lambda * mean_i (1 - sum_t alpha_ti)^2`` added
to the cross-entropy (eq. 14), which pushes the model to attend to every part of the image
about once over the sentence.

What differs from the paper: the encoder is any zoo backbone through the backbone contract
(``create_model(backbone, features_only=True)``, the map at ``feature_stride``) and trains with
the decoder (the paper took fixed ImageNet VGG features: nothing is downloaded here); the penalty
averages over the ``L`` locations where eq. 14 sums (with a sum, ``L`` times larger, it swamps the
cross-entropy on a small caption: its floor, uniform attention, is ``L (1 - T/L)^2``); the
recurrent cell is selectable — ``rnn="lstm"`` (the paper's), ``"gru"`` or ``"rnn"`` (tanh), each a
``torch.nn.*Cell``; decoding is greedy or beam search (the paper used beam search).

Token ids follow :mod:`archzoo.data.captions`: ``<pad>`` 0, ``<start>`` 1, ``<end>`` 2; the vocabulary
size is the model's ``num_classes``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn as nn

from ..data.captions import END, PAD, START
from ..registry import IMAGENET_MEAN, IMAGENET_STD, family_card, register_variants
from ..validate import UserError

CELLS = {"lstm": nn.LSTMCell, "gru": nn.GRUCell, "rnn": nn.RNNCell}


class TeacherForced(NamedTuple):
    """Training output: ``logits [B, T, V]`` for the words after each input word, ``alphas
    [B, T, L]``, and ``penalty``: the doubly stochastic term, already weighted (a scalar)."""

    logits: torch.Tensor
    alphas: torch.Tensor
    penalty: torch.Tensor


class Caption(NamedTuple):
    """Decoded captions: ``tokens [B, T]`` (the words, then ``<end>``, then ``<pad>``),
    ``alphas [B, T, L]`` (the attention of each emitted token over the ``grid`` ``(h, w)``
    locations), ``log_prob [B]`` (the summed log-probability of the tokens up to ``<end>``)."""

    tokens: torch.Tensor
    alphas: torch.Tensor
    log_prob: torch.Tensor
    grid: tuple[int, int]


# --- the pieces -----------------------------------------------------------------------------------


class SoftAttention(nn.Module):
    """Additive attention over ``L`` locations: ``alpha = softmax_i(w^T tanh(W_a a_i + W_h h))``,
    ``context = sum_i alpha_i a_i``. ``W_a a`` does not change over the steps: :meth:`keys` computes
    it once per image."""

    def __init__(self, feature_dim: int, hidden_size: int, attention_dim: int):
        super().__init__()
        self.key = nn.Linear(feature_dim, attention_dim)
        self.query = nn.Linear(hidden_size, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def keys(self, feats: torch.Tensor) -> torch.Tensor:
        return self.key(feats)

    def forward(self, feats: torch.Tensor, keys: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.score(torch.tanh(keys + self.query(h)[:, None])).squeeze(-1)  # [B, L]
        alpha = e.softmax(-1)
        return (alpha[:, :, None] * feats).sum(1), alpha


class AttentionDecoder(nn.Module):
    """One word per step from the annotations ``feats [B, L, D]``: attention, gate, recurrent cell,
    deep output. ``rnn``: ``lstm``, ``gru`` or ``rnn``."""

    def __init__(self, vocab_size: int, feature_dim: int, rnn: str = "lstm", embed_dim: int = 256,
                 hidden_size: int = 512, attention_dim: int = 256, dropout: float = 0.5):
        super().__init__()
        self.rnn, self.hidden_size = rnn, hidden_size
        self.embed = nn.Embedding(vocab_size, embed_dim)
        self.attention = SoftAttention(feature_dim, hidden_size, attention_dim)
        self.gate = nn.Linear(hidden_size, 1)  # beta_t = sigmoid(f_beta(h_{t-1}))
        self.init_h = nn.Linear(feature_dim, hidden_size)
        self.init_c = nn.Linear(feature_dim, hidden_size) if rnn == "lstm" else None
        self.cell = CELLS[rnn](embed_dim + feature_dim, hidden_size)
        self.drop = nn.Dropout(dropout)
        self.out_h = nn.Linear(hidden_size, embed_dim)  # L_h
        self.out_z = nn.Linear(feature_dim, embed_dim)  # L_z
        self.out = nn.Linear(embed_dim, vocab_size)  # L_o

    def init_state(self, feats: torch.Tensor):
        mean = feats.mean(1)
        h = torch.tanh(self.init_h(mean))
        return (h, torch.tanh(self.init_c(mean))) if self.init_c is not None else h

    def step(self, word: torch.Tensor, state, feats: torch.Tensor, keys: torch.Tensor):
        """``(logits [B, V], alpha [B, L], new state)`` after the words ``word [B]``."""
        h = state[0] if isinstance(state, tuple) else state
        context, alpha = self.attention(feats, keys, h)
        context = torch.sigmoid(self.gate(h)) * context
        e = self.embed(word)
        state = self.cell(torch.cat([e, context], -1), state)
        h = state[0] if isinstance(state, tuple) else state
        logits = self.out(self.drop(e + self.out_h(self.drop(h)) + self.out_z(context)))
        return logits, alpha, state


def _select(state, idx: torch.Tensor):
    return tuple(s[idx] for s in state) if isinstance(state, tuple) else state[idx]


def _word_log_probs(logits: torch.Tensor) -> torch.Tensor:
    """The model's log-probabilities of the next token, ``<pad>`` and ``<start>`` ruled out (they
    are never a word of a caption): decoding chooses among words and ``<end>``."""
    logp = logits.float().log_softmax(-1)
    logp[:, PAD] = float("-inf")
    logp[:, START] = float("-inf")
    return logp


def _stop(done: torch.Tensor) -> bool:
    """Every caption has ended (never on the meta device, where values are unknown)."""
    return not done.is_meta and bool(done.all())


# --- the model --------------------------------------------------------------------------------------


class ShowAttendTell(nn.Module):
    """Encoder (a zoo backbone's map at ``feature_stride``) + :class:`AttentionDecoder`.

    ``forward(images, captions)`` (captions: ``[B, T]`` token ids, ``<start> ... <end> <pad>``):
    teacher forcing, a :class:`TeacherForced`. ``forward(images)``: a decoded :class:`Caption`,
    greedy when ``beam_size`` is 1, else beam search with that width.

    Args:
        num_classes: the vocabulary size (with ``<pad>``, ``<start>``, ``<end>``, ``<unk>``).
        backbone: a zoo classifier name; ``feature_stride``: the reduction of the map attended over
            (e.g. 8: 8x8 locations for 64-pixel images).
        rnn: ``lstm`` (the paper's), ``gru`` or ``rnn``.
        doubly_stochastic: the penalty's weight lambda (the paper's 1; 0 switches it off).
        max_len: the most tokens a decoded caption has (``<end>`` included).
        beam_size: the width of the eval-mode decoding (1: greedy).
    """

    def __init__(self, num_classes: int = 10_000, in_chans: int = 3, backbone: str = "resnet18", feature_stride: int = 8,
                 rnn: str = "lstm", embed_dim: int = 256, hidden_size: int = 512, attention_dim: int = 256,
                 dropout: float = 0.5, doubly_stochastic: float = 1.0, max_len: int = 20, beam_size: int = 1):
        super().__init__()
        from ..builder import create_model

        if rnn not in CELLS:
            raise UserError(f"rnn: must be one of {', '.join(CELLS)}, got {rnn!r}")
        if num_classes < 3:
            raise UserError(f"num_classes: a captioner's vocabulary holds at least <pad>, <start> and <end>, got {num_classes}")
        for name, value in (("max_len", max_len), ("beam_size", beam_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name}: must be a whole number >= 1, got {value!r}")
        if isinstance(backbone, str) and backbone.startswith("show_attend_tell"):
            raise UserError(f"backbone: a classifier to encode the image, not the captioner {backbone!r}")
        self.num_classes, self.rnn = num_classes, rnn
        self.doubly_stochastic, self.max_len, self.beam_size = float(doubly_stochastic), max_len, beam_size
        self.encoder = create_model(backbone, features_only=True, out_strides=(feature_stride,), in_chans=in_chans)
        self.num_features = self.encoder.feature_info.channels()[-1]
        self.decoder = AttentionDecoder(num_classes, self.num_features, rnn, embed_dim, hidden_size, attention_dim, dropout)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Annotations ``[B, L, D]`` and the map's ``(h, w)``."""
        fmap = self.encoder(images)[-1]
        return fmap.flatten(2).transpose(1, 2), tuple(fmap.shape[-2:])

    def forward(self, images: torch.Tensor, captions: torch.Tensor | None = None):
        if captions is None:
            return self.generate(images)
        feats, _ = self.encode(images)
        keys = self.decoder.attention.keys(feats)
        state = self.decoder.init_state(feats)
        words = captions[:, :-1]
        logits, alphas = [], []
        for t in range(words.shape[1]):
            lg, alpha, state = self.decoder.step(words[:, t], state, feats, keys)
            logits.append(lg)
            alphas.append(alpha)
        alphas = torch.stack(alphas, 1)
        seen = (words != PAD).to(alphas.dtype)[:, :, None]  # steps that emit a word of the caption
        # eq. 14 averaged over the locations (not summed): lambda weighs the same whatever the map's size
        penalty = self.doubly_stochastic * (1 - (alphas * seen).sum(1)).square().mean()
        return TeacherForced(torch.stack(logits, 1), alphas, penalty)

    @torch.no_grad()
    def generate(self, images: torch.Tensor, beam_size: int | None = None, max_len: int | None = None) -> Caption:
        """Decode ``images`` greedily (``beam_size`` 1) or by beam search (default: ``self.beam_size``)."""
        k, n = beam_size or self.beam_size, max_len or self.max_len
        feats, grid = self.encode(images)
        if k == 1:
            return self._greedy(feats, n, grid)
        out = [self._beam(feats[i:i + 1], k, n) for i in range(len(feats))]
        return Caption(torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out]),
                       torch.stack([o[2] for o in out]), grid)

    def _greedy(self, feats: torch.Tensor, n: int, grid) -> Caption:
        b, dev = feats.shape[0], feats.device
        keys, state = self.decoder.attention.keys(feats), self.decoder.init_state(feats)
        word = torch.full((b,), START, dtype=torch.long, device=dev)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        log_prob = torch.zeros(b, device=dev)
        tokens, alphas = [], []
        for _ in range(n):
            logits, alpha, state = self.decoder.step(word, state, feats, keys)
            logp = _word_log_probs(logits)
            best = logp.argmax(-1)
            log_prob = log_prob + torch.where(done, 0.0, logp.gather(1, best[:, None])[:, 0])
            word = torch.where(done, PAD, best)
            tokens.append(word)
            alphas.append(alpha * (~done)[:, None])
            done = done | (word == END)
            if _stop(done):
                break
        return Caption(self._pad(torch.stack(tokens, 1), n), self._pad(torch.stack(alphas, 1), n), log_prob, grid)

    def _beam(self, feats: torch.Tensor, k: int, n: int):
        """One image's best caption by beam search: ``(tokens [n], alphas [n, L], log_prob)``.
        Hypotheses that emitted ``<end>`` stay in the beam with their score; the search stops when
        every kept hypothesis has ended. Scores are summed log-probabilities (no length bonus)."""
        dev, v = feats.device, self.num_classes
        feats = feats.expand(k, -1, -1)
        keys, state = self.decoder.attention.keys(feats), self.decoder.init_state(feats)
        word = torch.full((k,), START, dtype=torch.long, device=dev)
        score = torch.full((k,), float("-inf"), device=dev)
        score[0] = 0.0  # one live hypothesis at first: the others would repeat it
        done = torch.zeros(k, dtype=torch.bool, device=dev)
        tokens = torch.zeros(k, 0, dtype=torch.long, device=dev)
        alphas = feats.new_zeros(k, 0, feats.shape[1])
        for _ in range(n):
            logits, alpha, state = self.decoder.step(word, state, feats, keys)
            logp = _word_log_probs(logits)
            # an ended hypothesis continues only with <pad>, at no cost
            stay = torch.full_like(logp, float("-inf"))
            stay[:, PAD] = 0.0
            cand = score[:, None] + torch.where(done[:, None], stay, logp)
            score, flat = cand.flatten().topk(k)
            src, word = flat // v, flat % v
            state = _select(state, src)
            tokens = torch.cat([tokens[src], word[:, None]], 1)
            alphas = torch.cat([alphas[src], (alpha[src] * (~done[src])[:, None])[:, None]], 1)
            done = done[src] | (word == END)
            if _stop(done):
                break
        best = score.argmax()
        return self._pad(tokens[best][None], n)[0], self._pad(alphas[best][None], n)[0], score[best]

    @staticmethod
    def _pad(x: torch.Tensor, n: int) -> torch.Tensor:
        """``x [B, t, ...]`` padded with zeros (``<pad>``) to ``n`` steps."""
        if x.shape[1] == n:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], n - x.shape[1], *x.shape[2:])], 1)


# --- variants ---------------------------------------------------------------------------------------

card = family_card(
    family="show_attend_tell", task="captioning", year=2015,
    paper="Xu et al., Show, Attend and Tell: Neural Image Caption Generation with Visual Attention, arXiv:1502.03044",
    tricks=("recurrent_decoder", "soft_attention", "doubly_stochastic_attention", "teacher_forcing", "beam_search",
            "dropout"),
    dataset="MS COCO captions (the paper's 10,000-word vocabulary)", num_classes=10_000,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, input_size=(3, 224, 224), min_input_size=(3, 32, 32),
    heads=("decoder.out", "decoder.embed"),
)
_NOTES = ("Encoder: {0} (features_only, the map at stride {1}, trained with the decoder; the paper used fixed "
          "ImageNet VGG features); decoder: soft attention, gate beta, rnn='lstm' (default), 'gru' or 'rnn'; deep output. "
          "num_classes is the vocabulary size (archzoo.data.captions: <pad> 0, <start> 1, <end> 2, <unk> 3). "
          "forward(images, captions) trains (teacher forcing); forward(images) decodes (beam_size 1: greedy).")

register_variants(ShowAttendTell, [
    card("show_attend_tell_resnet18", kwargs=dict(backbone="resnet18", feature_stride=8),
         extra_tricks=("residual_shortcut", "batch_norm", "relu"), input_convs=("encoder.model.stem.conv.conv",),
         notes=_NOTES.format("resnet18", 8)),
    card("show_attend_tell_vgg19", kwargs=dict(backbone="vgg19", feature_stride=16),
         extra_tricks=("stacked_3x3_convs", "relu"), input_convs=("encoder.model.stages.0.conv1.conv",),
         notes=_NOTES.format("vgg19 (conv5_4: the paper's 14x14x512 annotations at 224 px)", 16)),
])
