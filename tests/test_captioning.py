"""Attention captioning (issue 21, item 3): Show, Attend and Tell on shapes-cap and on the user's
captions files — attention, the three decoders, greedy and beam decoding, the vocabulary, the data
and its errors, a tiny run that learns, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from test_robustness_helpers import assert_clean_error, run_cli

import archzoo
from archzoo.captioning import SoftAttention
from archzoo.data import load_dataset
from archzoo.data.captions import (END, PAD, SPECIALS, START, UNK, decode, encode, load_captions, match_vocabulary,
                                   tokenize)
from archzoo.data.shapes_captions import COLOURS, HELD_OUT, generate
from archzoo.engine.captioning import CaptionMeter
from archzoo.validate import UserError

pytestmark = pytest.mark.filterwarnings("ignore")
SMALL = dict(embed_dim=32, hidden_size=48, attention_dim=32)  # decoder sizes of the quick models


def small_captioner(rnn: str = "lstm", vocab: int = 12, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    return archzoo.create_model("show_attend_tell_resnet18", num_classes=vocab, rnn=rnn, **{**SMALL, **kwargs})


def random_captions(b: int, t: int, vocab: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    caps = torch.randint(4, vocab, (b, t), generator=g)
    caps[:, 0] = START
    caps[:, -1] = END
    caps[0, -3:] = torch.tensor([END, PAD, PAD])  # a shorter caption, padded
    return caps


# --- attention and the decoders ----------------------------------------------------------------------


def test_soft_attention_weights_are_a_distribution_over_the_locations():
    torch.manual_seed(0)
    att = SoftAttention(feature_dim=6, hidden_size=5, attention_dim=4)
    feats, h = torch.randn(3, 10, 6), torch.randn(3, 5)
    context, alpha = att(feats, att.keys(feats), h)
    assert alpha.shape == (3, 10) and context.shape == (3, 6)
    assert torch.allclose(alpha.sum(-1), torch.ones(3)) and (alpha >= 0).all()
    assert torch.allclose(context, torch.einsum("bl,bld->bd", alpha, feats), atol=1e-6)
    # the state steers it: another state looks elsewhere
    assert not torch.allclose(att(feats, att.keys(feats), -3 * h)[1], alpha)


@pytest.mark.parametrize("rnn,cell", [("lstm", torch.nn.LSTMCell), ("gru", torch.nn.GRUCell), ("rnn", torch.nn.RNNCell)])
def test_each_decoder_trains_by_teacher_forcing(rnn, cell):
    model = small_captioner(rnn).train()
    assert isinstance(model.decoder.cell, cell) and (model.decoder.init_c is not None) == (rnn == "lstm")
    x, caps = torch.randn(2, 3, 64, 64), random_captions(2, 7, 12)
    out = model(x, caps)
    assert out.logits.shape == (2, 6, 12) and out.alphas.shape == (2, 6, 64)  # 64 px / stride 8: 8x8 locations
    assert torch.allclose(out.alphas.sum(-1), torch.ones(2, 6), atol=1e-5)
    # the doubly stochastic penalty, by hand: the steps that read a caption word (not <pad>) count
    seen = (caps[:, :-1] != PAD).float()[:, :, None]
    assert out.penalty.item() == pytest.approx((1 - (out.alphas * seen).sum(1)).square().mean().item(), rel=1e-5)
    loss = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), caps[:, 1:].flatten(), ignore_index=PAD)
    (loss + out.penalty).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_bad_model_arguments_are_user_errors():
    with pytest.raises(UserError, match="rnn: must be one of lstm, gru, rnn"):
        small_captioner("transformer")
    with pytest.raises(UserError, match="beam_size"):
        small_captioner(beam_size=0)
    with pytest.raises(UserError, match="at least <pad>, <start> and <end>"):
        small_captioner(vocab=2)


# --- decoding ------------------------------------------------------------------------------------------


def _teacher_log_prob(model, x, tokens) -> torch.Tensor:
    """The summed log-probability of decoded ``tokens`` (words then <end>), by teacher forcing."""
    caps = torch.cat([torch.full((len(tokens), 1), START), tokens], 1)
    logp = model(x, caps).logits.log_softmax(-1).gather(2, tokens[:, :, None])[:, :, 0]
    return (logp * (tokens != PAD)).sum(1)


def test_greedy_and_beam_search_decoding():
    model = small_captioner("gru", vocab=9, seed=3, max_len=8).eval()
    with torch.no_grad():
        for p in model.decoder.parameters():  # livelier than the initialisation: decisions that matter
            p.mul_(3)
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        greedy = model.generate(x, beam_size=1)
        assert greedy.tokens.shape == (6, 8) and greedy.alphas.shape == (6, 8, 16) and greedy.grid == (4, 4)
        assert not (greedy.tokens == START).any()  # never emitted
        # the score is the model's own log-probability of the tokens it emitted
        assert torch.allclose(greedy.log_prob, _teacher_log_prob(model, x, greedy.tokens), atol=1e-4)
        feats, _ = model.encode(x)
        widths = {}
        for i in range(len(x)):
            one = model._beam(feats[i:i + 1], 1, 8)
            assert torch.equal(one[0], greedy.tokens[i]) and one[2].item() == pytest.approx(greedy.log_prob[i].item(), abs=1e-4)
        for k in (2, 4):
            beam = model.generate(x, beam_size=k)
            widths[k] = beam.log_prob
            assert (beam.log_prob >= greedy.log_prob - 1e-4).all()
            assert torch.allclose(beam.log_prob, _teacher_log_prob(model, x, beam.tokens), atol=1e-4)
        assert (widths[4] > greedy.log_prob + 1e-3).any(), "beam search never found a better caption: test proves little"
    # after <end> only <pad>; every emitted word's attention is a distribution, nothing after
    for tokens, alphas in zip(greedy.tokens, greedy.alphas):
        n = (tokens == END).nonzero()[0, 0].item() + 1 if (tokens == END).any() else len(tokens)
        assert (tokens[n:] == PAD).all() and (tokens[:n] != PAD).all()
        assert torch.allclose(alphas[:n].sum(-1), torch.ones(n), atol=1e-5) and (alphas[n:] == 0).all()


# --- vocabulary and data -------------------------------------------------------------------------------


def test_vocabulary_round_trip_and_unknown_words():
    assert tokenize("A red-circle, LEFT of a blue square.") == ["a", "red", "circle", "left", "of", "a", "blue", "square"]
    vocab = [*SPECIALS, "a", "blue", "circle", "red"]
    ids = encode(["a", "red", "circle"], vocab, length=7)
    assert ids == [START, 4, 7, 6, END, PAD, PAD] and decode(ids, vocab) == "a red circle"
    assert encode(["a", "green", "circle"], vocab)[2] == UNK
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    from archzoo.data.captions import captions_dataset, restrict_vocabulary

    ds = captions_dataset(images, [["a red circle"], ["a green circle", "one green circle"]])
    assert ds.class_names == [*SPECIALS, "a", "circle", "green", "one", "red"]
    train, val = restrict_vocabulary(ds.subset([0]), ds.subset([1]))  # "green" and "one" only in val
    assert train.class_names == val.class_names == [*SPECIALS, "a", "circle", "red"]
    assert [decode(c, val.class_names) for c in val.targets["captions"][0]] == ["a <unk> circle", "<unk> <unk> circle"]
    back = match_vocabulary(train, ds.class_names)  # into a larger vocabulary and back: the same words
    assert decode(back.targets["captions"][0, 0], back.class_names) == "a red circle"
    with pytest.raises(UserError, match="must start with"):
        match_vocabulary(train, ["a", "b", "c", "d"])


def test_shapes_cap_is_seeded_holds_out_compositions_and_says_where_things_are():
    images, caps, novel = generate(300, stream="train")
    again, caps2, _ = generate(40, stream="train")
    assert torch.equal(images[:40], again) and caps[:40] == caps2
    held = {f"{c} {s}" for c, s in HELD_OUT}
    assert not novel.any() and not any(h in c for pair in caps for c in pair for h in held)
    t_images, t_caps, t_novel = generate(300, stream="test")
    assert 0.35 < t_novel.float().mean() < 0.65
    assert all(any(h in pair[0] for h in held) == bool(n) for pair, n in zip(t_caps, t_novel))
    # the relation in the caption is where the named colours are in the picture
    checked = 0
    for image, (text, _) in zip(images[:60], caps[:60]):
        w = text.split()
        rel = " ".join(w[3:-3])
        c1, c2 = w[1], w[-2]
        if c1 == c2:
            continue
        px = image.permute(1, 2, 0).float()
        centre = []
        for c in (c1, c2):
            near = (px - torch.tensor(COLOURS[c], dtype=torch.float32)).norm(dim=-1) < 50
            ys, xs = near.nonzero(as_tuple=True)
            centre.append((xs.float().mean(), ys.float().mean()))
        (x1, y1), (x2, y2) = centre
        expect = {"left of": x1 < x2, "right of": x1 > x2, "above": y1 < y2, "below": y1 > y2}[rel]
        assert expect, (text, centre)
        checked += 1
    assert checked > 40


def _write_images(folder, names, size=20):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for n in names:
        Image.fromarray(rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)).save(folder / n)


def test_user_format_json_and_csv(tmp_path):
    _write_images(tmp_path / "j", ["x.png", "y.png"])
    (tmp_path / "j" / "captions.json").write_text(json.dumps({"x.png": ["A dog.", "a brown dog"], "y.png": "a cat"}))
    ds, bad = load_captions(tmp_path / "j", image_size=16)
    assert not bad and ds.images.shape == (2, 3, 16, 16) and ds.targets["captions"].shape == (2, 2, 5)
    assert [decode(c, ds.class_names) for c in ds.targets["captions"][0]] == ["a dog", "a brown dog"]
    assert ds.targets["captions"][1, 1].eq(PAD).all() and not ds.targets["novel"].any()
    _write_images(tmp_path / "c", ["x.png", "y.png"])
    (tmp_path / "c" / "captions.csv").write_text('image,caption\nx.png,"a dog, brown"\nx.png,a dog\ny.png,a cat\n')
    splits = load_dataset(tmp_path / "c", task="captioning", val_split=0.0, image_size=16)
    assert splits.class_names == [*SPECIALS, "a", "brown", "cat", "dog"] and len(splits.train) == 2


@pytest.mark.parametrize("files,needle", [
    ({"captions.json": {"x.png": "a dog", "missing.png": "a cat"}}, "missing.png"),
    ({"captions.json": {"x.png": ["a dog", "  ...  "]}}, "caption is empty"),
    ({"captions.json": '{"x.png": "a dog", "x.png": "a cat"}'}, "more than once"),
    ({"captions.json": {"x.png": ["a dog", "A dog."]}}, "listed twice"),
    ({"captions.json": [{"image": "x.png", "caption": "a dog", "score": 3}]}, "unknown field 'score'"),
    ({"captions.json": {"x.png": 5}}, "captions must be a text"),
    ({"captions.json": "{not json"}, "not valid JSON"),
    ({"captions.csv": "image,caption,author\nx.png,a dog,me\n"}, "unknown column 'author'"),
    ({"captions.csv": "image\nx.png\n"}, "name the columns image, caption"),
    ({"captions.csv": "image,caption\nx.png,a dog\nx.png,a dog\n"}, "listed twice"),
    ({"captions.csv": "image,caption\n../x.png,a dog\n"}, "stay inside"),
    ({"captions.csv": "image,caption\n"}, "lists no captions"),
    ({}, "holds no captions file"),
    ({"captions.csv": "image,caption\nx.png,a dog\n", "captions.json": {"x.png": "a dog"}}, "holds both"),
])
def test_user_format_errors_name_the_file_and_the_problem(tmp_path, files, needle):
    _write_images(tmp_path, ["x.png"])
    for name, content in files.items():
        (tmp_path / name).write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(UserError, match=needle):
        load_captions(tmp_path)


def test_skip_bad_skips_missing_and_unreadable_images(tmp_path):
    _write_images(tmp_path, ["x.png", "y.png"])
    (tmp_path / "y.png").write_bytes(b"not a png")
    (tmp_path / "captions.json").write_text(json.dumps({"x.png": "a dog", "y.png": "a cat", "z.png": "a cow"}))
    with pytest.raises(UserError, match="y.png"):
        load_captions(tmp_path)
    ds, bad = load_captions(tmp_path, skip_bad=True)
    assert len(ds) == 1 and sorted(p.rsplit("/", 1)[-1] for p, _ in bad) == ["y.png", "z.png"]


# --- a tiny run, eval and predict ----------------------------------------------------------------------


def baseline_bleu4(train, test) -> float:
    """BLEU-4 of the most frequent training caption given for every test image."""
    from collections import Counter

    common = Counter(tuple(r.tolist()) for r in train.targets["captions"][:, 0]).most_common(1)[0][0]
    meter = CaptionMeter(list(test.class_names))
    out = type("Out", (), {"tokens": torch.tensor(common[1:]).expand(len(test), -1)})
    meter.update(out, {"captions": test.targets["captions"], "novel": test.targets["novel"]}, None)
    return meter.compute()["bleu4"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A GRU captioner trained for 2 epochs on 1,200 shapes-cap images (about 16 s on one core)."""
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("cap") / "run"
    summary = archzoo.train("show_attend_tell_resnet18", "shapes-cap", out=out, log="quiet", train_limit=1200,
                            val_limit=100, model_kwargs={"rnn": "gru", "embed_dim": 64, "hidden_size": 128,
                                                         "attention_dim": 64, "max_len": 12}, epochs=2, batch_size=32,
                            opt="adamw", lr=3e-3, clip_grad=5.0, seed=0, device="cpu")
    return out, summary


def test_a_tiny_run_learns_better_than_the_most_frequent_caption(trained):
    out, summary = trained
    splits = load_dataset("shapes-cap", val_split=0.1)
    assert summary["task"] == "captioning" and (out / "captions.png").is_file()
    assert summary["history"][-1]["train_loss"] < summary["history"][0]["train_loss"]
    from archzoo.checkpoint import read_metadata

    meta = read_metadata(out / "best.safetensors")
    assert meta["class_names"] == splits.class_names  # the vocabulary, as JSON in the checkpoint
    base = baseline_bleu4(splits.train, splits.val)
    assert summary["best_val_bleu4"] > base + 0.05, (summary["best_val_bleu4"], base)


def test_cli_eval_reports_bleu_and_exact_match_on_held_out_compositions(trained, tmp_path, capsys):
    out, _ = trained
    rc, text, err = run_cli(["eval", out / "best.safetensors", "--data", "shapes-cap", "--json", "-b", "200"], capsys)
    assert rc == 0, err
    r = json.loads(text)
    assert r["count"] == 1000 and 400 < r["novel_count"] < 600
    assert 0 < r["bleu4"] <= r["bleu3"] <= r["bleu2"] <= r["bleu1"] <= 1
    assert {"exact_match", "novel_exact_match", "seen_exact_match"} <= r.keys()
    # the user format, read into the checkpoint's vocabulary ("dog" is not in it: <unk>), beam search
    images, caps, _ = generate(4, stream="test")
    folder = tmp_path / "mine"
    folder.mkdir()
    for i, im in enumerate(images):
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(folder / f"{i}.png")
    entries = {f"{i}.png": list(c) for i, c in enumerate(caps)}
    entries["0.png"].append("a dog")
    (folder / "captions.json").write_text(json.dumps(entries))
    rc, text, err = run_cli(["eval", out / "best.safetensors", "--data", folder, "--beam", "2"], capsys)
    assert rc == 0 and "BLEU-4" in text and "images" in text and "held-out" not in text, err
    assert_clean_error(*run_cli(["eval", "resnet20.cifar10", "--data", "shapes", "--beam", "2"], capsys)[::2], "--beam")


def test_cli_predict_writes_the_caption_and_every_words_attention(trained, tmp_path, capsys):
    out, _ = trained
    images, _, _ = generate(2, stream="test")
    files = []
    for i, im in enumerate(images):
        files.append(tmp_path / f"img{i}.png")
        Image.fromarray(im.permute(1, 2, 0).numpy()).save(files[-1])
    rc, text, err = run_cli(["predict", out / "best.safetensors", *files, "--out", tmp_path / "pred", "--json"], capsys)
    assert rc == 0, err
    preds = json.loads(text)["predictions"]
    for p, f in zip(preds, files):
        assert p["caption"] == " ".join(p["words"]) and p["words"] and p["log_prob"] < 0
        assert (tmp_path / "pred" / f"{f.stem}.txt").read_text().strip() == p["caption"]
        picture = Image.open(tmp_path / "pred" / f"{f.stem}.attention.png")
        assert picture.size[0] > 300
    rc, text, err = run_cli(["predict", out / "best.safetensors", files[0], "--beam", "3"], capsys)
    assert rc == 0 and "captions" in text, err
    assert_clean_error(*run_cli(["predict", out / "best.safetensors", files[0], "--tile", "64"], capsys)[::2], "--tile")
    assert_clean_error(*run_cli(["predict", out / "best.safetensors", files[0], "--beam", "0"], capsys)[::2], "--beam")
