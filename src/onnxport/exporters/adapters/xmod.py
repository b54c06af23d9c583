"""X-MOD: one language's adapter modules per export."""

from __future__ import annotations

import logging
from typing import Any

import torch

from onnxport.exporters.adapters.base import ExportAdapter, register_adapter

logger = logging.getLogger(__name__)


@register_adapter("xmod")
class XmodAdapter(ExportAdapter):
    """X-MOD routes every sample through the adapter modules of its language.

    Its forward picks them per language with `torch.unique_consecutive(lang_ids)` and a
    Python loop over the counts (data-dependent: no graph holds it), or, without
    `lang_ids`, uses `config.default_language` and refuses to run when none is set (the
    released checkpoints set none: users call `set_default_language`). The export
    therefore fixes one language: the config's default, else the first of
    `config.languages`, named in a warning and in the folder's config.json.
    """

    def prepare_model(self, model: torch.nn.Module, task: str) -> torch.nn.Module:
        """`model` with its default language set (the config's, else the first listed)."""
        config: Any = model.config
        if getattr(config, "default_language", None) is None:
            language = next(iter(config.languages))
            logger.warning(
                "X-MOD exports one language's adapters and the config sets no default_language: "
                "exporting '%s' (the first of config.languages). Set default_language in "
                "config.json to export another.",
                language,
            )
            model.set_default_language(language)  # type: ignore[operator]
        return model
