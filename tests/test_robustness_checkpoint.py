"""Issue 13, kinds 6 and 10: checkpoints of the right format but wrong content, and bad
``create_model`` arguments. Every one is refused with an error that names the file and the field
(or tensor, or argument); ``load_model``, ``create_model(weights=)``, ``eval`` and ``predict`` agree."""

from __future__ import annotations

import json
import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_robustness_helpers import assert_clean_error, run_cli, save_checkpoint

import archzoo
from archzoo.checkpoint import read_tensors, save_tensors
from archzoo.validate import UserError

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# per metadata field: values of the wrong type or range
BAD_VALUES = {
    "schema": st.sampled_from(["1", None, 0, -1, 1.5, True, [1], {}]),
    "model": st.sampled_from([None, 5, "no_such_model", ["resnet20"], ""]),
    "kwargs": st.sampled_from(["drop_rate=0.1", [1], 3, {"no_such_arg": 1}, {"num_classes": 3}, {"weights": "x.pth"},
                               {"drop_rate": 5}, {"drop_path_rate": -1}, {"in_chans": 1}]),
    "num_classes": st.one_of(st.integers(max_value=-1), st.sampled_from(["2", 2.0, None, True, [2]])),
    "in_chans": st.one_of(st.integers(max_value=0), st.sampled_from(["3", 3.5, None, False])),
    "class_names": st.sampled_from(["ab", [1, 2], ["a"], ["a", "b", "c"], ["a", None], ["a", "a"], None, {"a": 0}]),
    "input_size": st.one_of(st.lists(st.integers(max_value=0), min_size=3, max_size=3).map(lambda v: [3, *v[1:]]),
                            st.sampled_from([[3, 4, 4], [3, 7, 16], "32", [32], [3, 16.5, 16], None, [3, 16]])),
    "mean": st.sampled_from([[], ["a"], [math.nan, 0.5, 0.5], "0.5", None, [0.5, 0.5]]),
    "std": st.sampled_from([[0.0, 0.2, 0.2], [-1.0, 1.0, 1.0], [math.inf] * 3, "x", [], [1.0] * 2]),
    "out_indices": st.sampled_from([[], "1", [1.5], 3, [True]]),
    "task": st.sampled_from([5, None, ["classification"]]),
    "epoch": st.sampled_from([-1, "3", 2.5]),
    "metrics": st.sampled_from(["acc", [0.5]]),
    "recipe": st.sampled_from(["sgd", [1]]),
    "run": st.sampled_from(["x", [1], {"data_options": "x"}, {"data_options": {"image_size": 0}},
                            {"data_options": {"image_size": "16"}}]),
    "archzoo_version": st.sampled_from([5, ["0.1"]]),
}


def _rewrite(src, dst, change: dict | None = None, drop: tuple = (), tensors=None):
    t, meta = read_tensors(src)
    meta = {k: v for k, v in meta.items() if k not in drop}
    meta.update(change or {})
    save_tensors(dst, tensors if tensors is not None else t, meta)
    return dst


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "good.safetensors")


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "x.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(path)
    return path


def test_the_good_checkpoint_loads(good):
    model, meta = archzoo.load_model(good)
    assert meta["class_names"] == ["a", "b"] and model.num_classes == 2


@SETTINGS
@given(data=st.data())
def test_every_bad_metadata_field_is_refused_naming_file_and_field(good, tmp_path, data):
    field = data.draw(st.sampled_from(sorted(BAD_VALUES)))
    value = data.draw(BAD_VALUES[field])
    path = _rewrite(good, tmp_path / "bad.safetensors", {field: value})
    with pytest.raises(ValueError) as e:
        archzoo.load_model(path)
    msg = str(e.value)
    assert "bad.safetensors" in msg and repr(field) in msg or (field == "schema" and "newer archzoo" in msg), msg
    # create_model(weights=) reads the metadata through the same schema
    with pytest.raises(ValueError, match="bad.safetensors"):
        archzoo.create_model("resnet20", num_classes=2, weights=path)


@pytest.mark.parametrize("field", ["model", "num_classes", "in_chans"])
def test_required_fields(good, tmp_path, field):
    path = _rewrite(good, tmp_path / "bad.safetensors", drop=(field,))
    with pytest.raises(ValueError, match=f"'{field}' is missing"):
        archzoo.load_model(path)


def test_the_cli_refuses_bad_metadata_cleanly(good, image, tmp_path, capsys):
    cases = {"num_classes": -3, "class_names": ["a"], "in_chans": 0, "kwargs": "x", "input_size": [3, -16, 16],
             "schema": None, "run": {"data_options": {"image_size": -1}}}
    for field, value in cases.items():
        path = _rewrite(good, tmp_path / f"{field}.safetensors", {field: value})
        for argv in (["eval", path, "--data", "digits"], ["predict", path, image], ["cam", path, image, "--out", tmp_path]):
            rc, _, err = run_cli(argv, capsys)
            assert_clean_error(rc, err, f"{field}.safetensors", field)


@pytest.mark.parametrize("change", ["missing", "extra", "shape", "int", "nan", "inf"])
def test_wrong_tensors_are_refused_naming_the_tensor(good, image, tmp_path, capsys, change):
    t, _ = read_tensors(good)
    key = "head.fc.weight" if "head.fc.weight" in t else next(k for k, v in t.items() if v.is_floating_point())
    t = dict(t)
    if change == "missing":
        del t[key]
    elif change == "extra":
        t["surplus.weight"] = torch.zeros(3)
    elif change == "shape":
        t[key] = torch.zeros(t[key].shape[0] + 1, *t[key].shape[1:])
    elif change == "int":
        t[key] = t[key].to(torch.int32)
    else:
        bad = t[key].clone()
        bad.view(-1)[3] = math.nan if change == "nan" else -math.inf
        t[key] = bad
    path = _rewrite(good, tmp_path / f"{change}.safetensors", tensors=t)
    needle = {"missing": "missing", "extra": "surplus.weight", "shape": "shape", "int": "int32",
              "nan": "NaN", "inf": "infinite"}[change]
    with pytest.raises(ValueError, match=needle):
        archzoo.load_model(path)
    for argv in (["eval", path, "--data", "digits", "-b", "64"], ["predict", path, image]):
        rc, out, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, f"{change}.safetensors")
        assert "accuracy" not in out


def test_non_finite_weights_through_create_model(tmp_path):
    model = archzoo.create_model("resnet20", num_classes=2)
    sd = model.state_dict()
    sd["head.fc.bias"] = torch.tensor([math.nan, 0.0])
    stem = next(k for k, v in sd.items() if v.ndim == 4)
    sd[stem] = sd[stem].clone()
    sd[stem].view(-1)[0] = math.inf
    torch.save(sd, tmp_path / "w.pth")
    with pytest.raises(ValueError, match=f"w.pth: tensor '{stem}' holds infinite"):
        archzoo.create_model("resnet20", num_classes=2, weights=tmp_path / "w.pth")


def test_a_checkpoint_without_a_classifier(tmp_path, image, capsys):
    model = archzoo.create_model("resnet20", num_classes=0)
    archzoo.save_model(model, tmp_path / "features.safetensors", input_size=[3, 16, 16])
    loaded, meta = archzoo.load_model(tmp_path / "features.safetensors")  # fine as a feature model
    assert meta["num_classes"] == 0
    for argv in (["predict", tmp_path / "features.safetensors", image],
                 ["eval", tmp_path / "features.safetensors", "--data", "digits"],
                 ["cam", tmp_path / "features.safetensors", image, "--out", tmp_path]):
        rc, _, err = run_cli(argv, capsys)
        assert_clean_error(rc, err, "without a classifier")


def test_metadata_class_names_that_are_not_utf8_come_back_printable(good, tmp_path):
    path = _rewrite(good, tmp_path / "odd.safetensors", {"class_names": ["caf\udce9", "b"]})
    _, meta = archzoo.load_model(path)
    assert meta["class_names"] == ["caf\\xe9", "b"]
    json.dumps(meta, ensure_ascii=False).encode("utf-8")  # valid Unicode throughout


# --------------------------------------------------------------------------- create_model arguments


@settings(max_examples=20, deadline=None)
@given(n=st.one_of(st.integers(max_value=-1), st.sampled_from(["10", 2.5, True, [3]])))
def test_create_model_num_classes(n):
    with pytest.raises(ValueError, match="num_classes must be an integer >= 0"):
        archzoo.create_model("resnet20", num_classes=n)


@settings(max_examples=20, deadline=None)
@given(c=st.one_of(st.integers(max_value=0), st.sampled_from(["3", 1.0, False])))
def test_create_model_in_chans(c):
    with pytest.raises(ValueError, match="in_chans must be an integer >= 1"):
        archzoo.create_model("resnet20", in_chans=c)


@pytest.mark.parametrize("out_indices", [(), [], "12", [1.5], [True], 3])
def test_create_model_out_indices(out_indices):
    with pytest.raises(ValueError, match="out_indices"):
        archzoo.create_model("resnet20", features_only=True, out_indices=out_indices)


@pytest.mark.parametrize("kwargs,name", [({"drop_rate": -0.1}, "drop_rate"), ({"drop_path_rate": 1.5}, "drop_path_rate"),
                                         ({"drop_path_rate": math.nan}, "drop_path_rate")])
def test_create_model_rates(kwargs, name):
    with pytest.raises(ValueError, match=f"{name} must be a number in \\[0, 1\\)"):
        archzoo.create_model("resnet20", **kwargs)


def test_create_model_name_must_be_a_string():
    with pytest.raises(ValueError, match="name must be a model name"):
        archzoo.create_model(None)
    with pytest.raises(UserError):
        archzoo.create_model(["resnet20"])


def test_create_model_unknown_arguments():
    with pytest.raises(ValueError, match="resnet20 takes no argument 'no_such_arg'"):
        archzoo.create_model("resnet20", no_such_arg=1)


@pytest.mark.parametrize("kwargs", [{"layers": []}, {"layers": "abc"}, {"stem_width": -4}, {"block": "nope"}])
def test_kwargs_that_do_not_build_the_model(good, tmp_path, kwargs):
    path = _rewrite(good, tmp_path / "kw.safetensors", {"kwargs": kwargs})
    with pytest.raises(ValueError, match="kw.safetensors: metadata field 'kwargs'"):
        archzoo.load_model(path)
