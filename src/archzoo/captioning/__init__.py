"""Image captioning: an image in, a sentence out, with where the model looked for every word.

:mod:`.show_attend_tell` (Xu et al. 2015, arXiv:1502.03044): a zoo backbone's feature map through
the backbone contract, soft attention with the doubly stochastic penalty and the gate beta, and an
LSTM, GRU or plain-RNN decoder trained by teacher forcing, decoded greedily or by beam search. The
data (vocabulary, the user's captions files, the built-in ``shapes-cap``) is :mod:`archzoo.data.captions`
and :mod:`archzoo.data.shapes_captions`; training and scoring (BLEU-1..4, exact match) is
:class:`archzoo.engine.captioning.CaptioningTask`; :mod:`.render` draws the attention maps.

Importing this package registers the captioners (``archzoo.list_models(task="captioning")``).
"""

from __future__ import annotations

from .show_attend_tell import Caption, ShowAttendTell, SoftAttention, TeacherForced

__all__ = ["Caption", "ShowAttendTell", "SoftAttention", "TeacherForced"]
