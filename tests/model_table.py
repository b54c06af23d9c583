"""Per-architecture test expectations, as data (never `if model_type == ...` in tests).

Every model type onnxport claims as tested (`onnxport.support.TESTED_MODEL_TYPES`) has a row;
`overrides` are tiny-config fields on top of `onnxport.testing.TINY_SIZES`, `xfail` maps a
task to the reason it is expected to fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelCase:
    model_type: str
    overrides: dict[str, Any] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)


CASES: dict[str, ModelCase] = {
    case.model_type: case
    for case in (
        ModelCase("albert"),
        ModelCase("bert"),
        ModelCase("camembert"),
        ModelCase("deberta-v2"),
        ModelCase("distilbert"),
        ModelCase("electra"),
        # A 16-token local window, shorter than the 23-token validation batch, so the
        # sliding-window path is exercised at a shape the trace never saw.
        ModelCase("modernbert", {"local_attention": 16, "global_attn_every_n_layers": 2}),
        ModelCase("mpnet"),
        ModelCase("roberta"),
        ModelCase("xlm-roberta"),
    )
}
