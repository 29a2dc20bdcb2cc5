"""Each loss is declared once, beside its mathematics, and its record is readable without torch
(issue 24).

Where each record is declared is observed, not listed: a fresh interpreter imports the
registries with ``Registry.register`` watched, and notes for every loss the module-level
statement that entered it (its module and line) and whether torch was loaded.
"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dm_core.loss_formulas import FORMULAS, MARGIN_CAP
from dm_core.losses import LOSSES, list_losses, make_loss
from dm_core.schemes import SCHEMES

ROOT = Path(__file__).resolve().parents[1]

# Imports the registries with Registry.register watched; prints, for every loss, the module and
# line of the module-level statement that registered it, and whether torch was imported.
WATCH_DECLARATIONS = (
    "import json, sys\n"
    "from dm_core.registry import Registry\n"
    "register, seen = Registry.register, {}\n"
    "def watched(self, name, **record):\n"
    "    frame = sys._getframe(1)\n"
    "    while frame.f_code.co_name != '<module>':\n"
    "        frame = frame.f_back\n"
    "    if self.kind == 'loss':\n"
    "        seen[name] = [frame.f_globals['__name__'], frame.f_lineno]\n"
    "    return register(self, name, **record)\n"
    "Registry.register = watched\n"
    "import dm_core.registries\n"
    "print(json.dumps({'declared': seen, 'torch': 'torch' in sys.modules}))")


@pytest.fixture(scope="module")
def declarations():
    done = subprocess.run([sys.executable, "-c", WATCH_DECLARATIONS], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_the_whole_loss_registry_loads_without_torch(declarations):
    assert declarations["torch"] is False
    assert list(declarations["declared"]) == list_losses()  # every loss, in the same order


FORMULA_LOSSES = [n for n in list_losses() if LOSSES.get(n).extra["family"] != "scheme"]


@pytest.mark.parametrize("name", FORMULA_LOSSES)
def test_a_formula_loss_is_declared_on_the_function_holding_its_math(declarations, name):
    """The statement that registered the loss is the decorator of its formula function."""
    module, line = declarations["declared"][name]
    formula = FORMULAS[name]
    source, first = inspect.getsourcelines(formula)
    def_line = first + next(i for i, text in enumerate(source) if text.lstrip().startswith("def "))
    assert module == formula.__module__
    assert first <= line <= def_line, (name, line, first, def_line)


@pytest.mark.parametrize("name", [n for n in list_losses() if n not in FORMULA_LOSSES])
def test_a_scheme_loss_takes_its_parameters_from_its_family(name):
    entry = LOSSES.get(name)
    family = SCHEMES.get(entry.extra["scheme"])
    assert name not in FORMULAS
    expected = (*family.params, MARGIN_CAP) if entry.extra["normalise"] else family.params
    assert len(entry.params) == len(expected)
    assert all(own is theirs for own, theirs in zip(entry.params, expected, strict=True))


ONE_NETWORK_FORMULAS = [n for n in FORMULA_LOSSES
                        if list(inspect.signature(FORMULAS[n]).parameters)[2:]
                        == [p.name for p in LOSSES.get(n).params]]


def test_the_single_batch_formulas_are_the_ones_without_state():
    # ELR takes its running averages and co-teaching a second network: they are checked
    # against their own references (tests/test_elr.py, tests/test_co_teaching.py).
    assert sorted(set(FORMULA_LOSSES) - set(ONE_NETWORK_FORMULAS)) == ["co-teaching", "elr"]


@pytest.mark.parametrize("name", ONE_NETWORK_FORMULAS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_formula_loss_module_computes_its_formula(name, dtype):
    """The module's value and gradient are exactly its formula's mean, at non-default parameters."""
    g = torch.Generator().manual_seed(3)
    logits = (4.0 * torch.randn(24, 6, generator=g)).to(dtype)
    targets = torch.randint(0, 6, (24,), generator=g)
    params = {p.name: (p.default + p.ui_high) / 2 for p in LOSSES.get(name).params}
    z_module, z_formula = (logits.clone().requires_grad_(True) for _ in range(2))
    value = make_loss(name, **params)(z_module, targets)
    expected = FORMULAS[name](z_formula, targets, **params).mean()
    value.backward()
    expected.backward()
    assert torch.equal(value, expected)
    assert torch.equal(z_module.grad, z_formula.grad)
