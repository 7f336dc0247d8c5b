"""Model building blocks behave as torch modules: the standard module API reaches every layer."""

from __future__ import annotations

from torch import nn

from worldsim import preset
from worldsim.model.flow import FlowNet


def test_module_apply_visits_every_submodule():
    # `net.apply(init_fn)` is torch's weight-init idiom; a layer method named `apply` would shadow Module.apply.
    net = FlowNet(preset("tiny"))
    seen: list[nn.Module] = []
    net.apply(seen.append)
    assert len(seen) == len(list(net.modules()))
