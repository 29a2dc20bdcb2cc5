"""Registry parameters: the constraints are pydantic's, the messages name the field and range."""

from __future__ import annotations

import math

import pytest

from dm_core.data import DATASETS
from dm_core.losses import LOSSES
from dm_core.models import MODELS
from dm_core.noise import NOISE
from dm_core.registry import ConfigError, Param, Registry
from dm_core.schemes import SCHEMES

REGISTRIES = [SCHEMES, LOSSES, NOISE, DATASETS, MODELS]


@pytest.mark.parametrize("registry", REGISTRIES, ids=lambda r: r.kind)
def test_every_registered_default_passes_its_own_validation(registry):
    for entry in registry.entries():
        assert registry.validate_params(entry.name, {}) == entry.defaults()
        for p in entry.params:
            if p.default is not None:
                assert p.check(p.default, "") == p.default, (entry.name, p.name)


@pytest.mark.parametrize(("low_inclusive", "high_inclusive"), [(True, True), (False, True),
                                                                 (True, False), (False, False)])
def test_float_bounds_at_and_beyond_each_edge(low_inclusive, high_inclusive):
    p = Param("x", 0.5, "float", 0.0, 1.0, low_inclusive=low_inclusive, high_inclusive=high_inclusive)
    for value, ok in ((0.0, low_inclusive), (1.0, high_inclusive), (math.nextafter(0.0, -1), False),
                      (math.nextafter(1.0, 2), False), (0.25, True), (math.nextafter(0.0, 1), True)):
        if ok:
            assert p.check(value, "s") == value
        else:
            with pytest.raises(ConfigError) as err:
                p.check(value, "s")
            left, right = "[" if low_inclusive else "(", "]" if high_inclusive else ")"
            assert err.value.errors == [("s.x", f"{value!r} is out of range; must be a float in "
                                                f"{left}0, 1{right}")]


def test_numbers_are_numbers_and_ints_whole():
    f = Param("f", 1.0)
    assert f.check(2, "") == 2.0 and isinstance(f.check(2, ""), float)
    i = Param("i", 1, "int", 1, 10)
    assert i.check(3.0, "") == 3 and isinstance(i.check(3.0, ""), int)
    for bad, words in ((True, "must be a number"), ("3", "must be a number"), (2.5, "whole number"),
                       (math.inf, "whole number"), (None, None)):
        if bad is None:
            assert i.check(bad, "") is None  # "not given": the default applies
            continue
        with pytest.raises(ConfigError, match=words):
            i.check(bad, "m")
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ConfigError, match=r"m\.f: must be finite"):
            f.check(bad, "m")


def test_lists_and_matrices_name_the_bad_element():
    hidden = Param("hidden", [8], "list[int]", 1, 100)
    assert hidden.check((4, 5.0), "model") == [4, 5]
    with pytest.raises(ConfigError) as err:
        hidden.check([4, 0, 7, 101], "model")
    assert err.value.paths() == ["model.hidden[1]", "model.hidden[3]"]
    with pytest.raises(ConfigError, match=r"model\.hidden: must be a list of numbers \(got 'wide'\)"):
        hidden.check("wide", "model")
    matrix = Param("t", None, "matrix", 0.0, 1.0)
    assert matrix.check([[1, 0], [0.5, 0.5]], "n") == [[1.0, 0.0], [0.5, 0.5]]
    with pytest.raises(ConfigError) as err:
        matrix.check([[1, 0], [0.5, 1.5]], "n")
    assert err.value.paths() == ["n.t[1][1]"]
    with pytest.raises(ConfigError, match=r"n\.t\[0\]: must be a list of lists"):
        matrix.check([1, 2], "n")


def test_strings_bools_and_choices():
    reg = Registry("thing")

    @reg.register("a", description="", params=[Param("mode", "fast", "str", choices=("fast", "slow")),
                                                Param("on", False, "bool")])
    def a(mode, on):
        return mode, on

    assert reg.create("a", mode="slow", on=True) == ("slow", True)
    with pytest.raises(ConfigError) as err:
        reg.validate_params("a", {"mode": "medium", "on": 1}, where="x")
    assert err.value.errors == [("x.mode", "'medium' is not allowed; one of fast, slow"),
                                ("x.on", "must be true or false (got 1)")]


def test_unknown_parameters_are_refused_unless_the_entry_is_open():
    with pytest.raises(ConfigError) as err:
        LOSSES.validate_params("dm", {"lam": 1.0, "gamma": 2.0}, where="loss")
    assert err.value.errors == [("loss.gamma", "unknown parameter for loss 'dm'; allowed: lam, beta, eps")]
    assert MODELS.validate_params("torchvision", {"arch": "resnet18", "groups": 1}, where="model") == {
        "arch": "resnet18", "groups": 1}


def test_a_parameter_kind_must_exist():
    with pytest.raises(ValueError, match="kind 'complex'"):
        Param("z", 0, "complex")
