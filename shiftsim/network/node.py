"""The node of a network graph: the base class every operator derives from, and its registry.

An operator is one small frozen dataclass deriving from :class:`Node`. It knows

* its shape inference, :meth:`Node.infer_shape` (shapes include the batch axis),
* its float64 semantics, :meth:`Node.forward` (the float reference and the calibration), and
* its integer semantics on raw activations, :meth:`Node.run_int`, with whatever
  requantisation it needs (through the :class:`StepContext` the runner hands it).

:func:`register` files the class under its ``op`` name; ``Node(op="relu", name=...)`` builds the
registered class (so ``Node(name="r", op="relu")`` is ``Relu(name="r")``). Adding an operator is
one class with ``@register`` and one test; the runner has no per-operator code. A class that
lists ONNX op types in ``onnx_types`` is read from ONNX files directly (the node's tensor inputs
are its inputs, ONNX attributes its fields of the same name), so a new ONNX operator is that one
class too; operators whose ONNX form needs more (constant operands, folding into a layer,
opset-dependent attributes) register a converter by ONNX domain and op type instead
(:func:`shiftsim.io.onnx_io.converter`, the standard ones in :mod:`shiftsim.io.onnx_ops`).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

if TYPE_CHECKING:
    from shiftsim.network.activations import Act
    from shiftsim.network.runner import Step, StepContext

__all__ = ["OPS", "Node", "onnx_class", "op_class", "register"]

#: Registered operators by ``op`` name, in registration order.
OPS: dict[str, type[Node]] = {}

_N = TypeVar("_N", bound="type[Node]")


class _NodeMeta(abc.ABCMeta):
    """``Node(op=..., ...)`` builds the class registered under ``op``."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if cls is Node:
            op = kwargs.pop("op", None)
            if op not in OPS:
                raise ValueError(
                    f"op must be one of {tuple(OPS)}, got {op!r} (node {kwargs.get('name')!r})"
                )
            return OPS[op](*args, **kwargs)
        return super().__call__(*args, **kwargs)


def register(cls: _N) -> _N:
    """Class decorator: file an operator class under its ``op`` name."""
    op = cls.__dict__.get("op")
    if not isinstance(op, str) or not op:
        raise TypeError(f"{cls.__name__} must define a class attribute op: str")
    if op in OPS and OPS[op] is not cls:
        raise ValueError(f"op {op!r} is registered already, by {OPS[op].__name__}")
    OPS[op] = cls
    return cls


def onnx_class(op_type: str) -> type[Node] | None:
    """The registered class that reads the ONNX op type ``op_type`` directly, if any."""
    for cls in OPS.values():
        if op_type in cls.onnx_types:
            return cls
    return None


def op_class(op: str) -> type[Node]:
    """The class registered under ``op``."""
    if op not in OPS:
        raise ValueError(f"op must be one of {tuple(OPS)}, got {op!r}")
    return OPS[op]


@dataclass(frozen=True, kw_only=True, eq=False)
class Node(metaclass=_NodeMeta):
    """One operation of a network (the base of every operator class).

    Parameters
    ----------
    name : str
        Unique within the network.
    inputs : tuple of str, default ()
        Names of the nodes it reads, ``""`` for the network input; empty means the previous
        node (the network input for the first node).

    Notes
    -----
    Class attributes of an operator: ``op`` (its registered name), ``arity`` (the number of
    inputs it takes, None for any number from one up), ``fuses_into_producer`` (True for a
    ReLU: a node whose only consumer it is clamps its own output at zero, see
    :mod:`shiftsim.network.runner`) and ``onnx_types`` (ONNX op types of the default domain read
    directly as this operator, see the module notes).
    """

    op: ClassVar[str] = ""
    arity: ClassVar[int | None] = 1
    fuses_into_producer: ClassVar[bool] = False
    onnx_types: ClassVar[tuple[str, ...]] = ()

    name: str
    inputs: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty str, got {self.name!r}")
        if isinstance(self.inputs, str) or not isinstance(self.inputs, Sequence):
            raise TypeError(f"{self.name}.inputs must be a sequence of str, got {self.inputs!r}")
        object.__setattr__(self, "inputs", tuple(self.inputs))
        if not all(isinstance(s, str) for s in self.inputs):
            raise TypeError(f"{self.name}.inputs must be a sequence of str, got {self.inputs!r}")
        if self.arity is not None and self.inputs and len(self.inputs) != self.arity:
            raise ValueError(
                f"node {self.name!r}: {self.op} takes {self.arity} inputs, got {self.inputs!r}"
            )
        self.validate()

    def validate(self) -> None:
        """Check the operator's own fields (called at construction); raise ValueError."""

    def set(self, field_name: str, value: Any) -> None:
        """Set a field during validation (the dataclass is frozen)."""
        object.__setattr__(self, field_name, value)

    @property
    def has_weights(self) -> bool:
        """Whether the node is a layer with weights that runs on a datapath."""
        return False

    def infer_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        """Output shape (batch axis included) from the input shapes.

        The default runs :meth:`forward` on zeros of batch 1; operators override it.
        """
        args = [np.zeros((1, *s[1:])) for s in shapes]
        out = self.forward(args)
        return (shapes[0][0], *out.shape[1:])

    @abc.abstractmethod
    def forward(self, args: list[NDArray[np.float64]]) -> NDArray[np.float64]:
        """The float64 semantics: the output from the inputs."""

    @abc.abstractmethod
    def run_int(self, args: list[Act], ctx: StepContext) -> Step:
        """The integer semantics on raw activations (see :mod:`shiftsim.network.runner`)."""
