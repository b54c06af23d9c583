"""The one base class of per-architecture adapters, and their registry.

An adapter holds only what the generic path cannot derive for one architecture. It may
override exactly these members, nothing else:

- `atol`: the default validation tolerance for this architecture;
- `input_names(config, task, default)`: the ONNX inputs, in order;
- `dummy_inputs(config, task, names, axes, shape)`: example values the generic code cannot make;
- `prepare_model(model, task)`: wrap the model (never patch it globally) before capture.

Adapters subclass `ExportAdapter` directly, never another model's adapter, and register with
`@register_adapter("model_type", ...)`, which refuses a key registered twice.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import torch

from onnxport.exporters.dummy import InputShape


class ExportAdapter:
    """Per-architecture export knowledge; the defaults are the generic path."""

    model_types: ClassVar[tuple[str, ...]] = ()
    atol: ClassVar[float | None] = None

    def input_names(self, config: Any, task: str, default: list[str]) -> list[str]:
        """ONNX input names, in order. Default: the tokenizer's names the model accepts."""
        return default

    def dummy_inputs(
        self,
        config: Any,
        task: str,
        names: list[str],
        axes: dict[str, dict[int, str]],
        shape: InputShape,
    ) -> dict[str, torch.Tensor] | None:
        """Example inputs at `shape`, or None to let the generic code make them."""
        return None

    def prepare_model(self, model: torch.nn.Module, task: str) -> torch.nn.Module:
        """Return the module to capture. Wrap here; never change the class globally."""
        return model


def declares_inputs(adapter: ExportAdapter) -> bool:
    """Whether `adapter` names the graph's inputs itself (the generic path need not)."""
    return type(adapter).input_names is not ExportAdapter.input_names


AdapterT = TypeVar("AdapterT", bound=type[ExportAdapter])


class AdapterRegistry:
    """Model type -> adapter class; registering a model type twice is an error."""

    def __init__(self) -> None:
        self._adapters: dict[str, type[ExportAdapter]] = {}

    def register(self, *model_types: str) -> Callable[[AdapterT], AdapterT]:
        """Class decorator registering an adapter for `model_types`."""
        if not model_types:
            raise ValueError("register_adapter needs at least one model_type")

        def decorator(cls: AdapterT) -> AdapterT:
            if not issubclass(cls, ExportAdapter):
                raise TypeError(f"{cls.__name__} must subclass ExportAdapter")
            bases = [b for b in cls.__mro__[1:] if b is not ExportAdapter and b is not object]
            if any(issubclass(b, ExportAdapter) for b in bases):
                raise TypeError(
                    f"{cls.__name__} subclasses another adapter; adapters subclass "
                    "ExportAdapter directly so editing one never changes another."
                )
            for model_type in model_types:
                if model_type in self._adapters:
                    raise ValueError(
                        f"An adapter for '{model_type}' is already registered "
                        f"({self._adapters[model_type].__name__})."
                    )
            for model_type in model_types:
                self._adapters[model_type] = cls
            cls.model_types = tuple(model_types)
            return cls

        return decorator

    def get(self, model_type: str) -> ExportAdapter:
        """The adapter for `model_type`, or the generic default."""
        return self._adapters.get(model_type, ExportAdapter)()

    def registered(self) -> dict[str, type[ExportAdapter]]:
        """A copy of the registry's contents."""
        return dict(self._adapters)

    def unregister(self, model_type: str) -> None:
        """Remove an adapter (for user code that replaces its own registration)."""
        self._adapters.pop(model_type, None)


ADAPTERS = AdapterRegistry()
register_adapter = ADAPTERS.register
