"""Validators of ``slicer.parameterNodeWrapper`` (test stand-in, written from Slicer's documented rules).

A validator's ``validate(value)`` raises ``ValueError`` (``TypeError`` for a wrong type) and runs on every
write, including the default written when a wrapper first meets a parameter node.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Validator", "NotNone", "IsNone", "IsInstance", "WithinRange", "Minimum", "Maximum", "Choice", "Exclude",
           "split_validators"]


class Validator:
    def validate(self, value: Any) -> None:
        raise NotImplementedError


class NotNone(Validator):
    def validate(self, value: Any) -> None:
        if value is None:
            raise ValueError("Value must not be None")


class IsNone(Validator):
    def validate(self, value: Any) -> None:
        if value is not None:
            raise ValueError("Value must be None")


class IsInstance(Validator):
    """``None`` passes (``NotNone`` refuses it where needed)."""

    def __init__(self, classtype) -> None:
        self.classtype = classtype

    def validate(self, value: Any) -> None:
        if value is not None and not isinstance(value, self.classtype):
            raise TypeError(f"Value must be of type {self.classtype}, is {type(value)} ({value!r})")


class WithinRange(Validator):
    """Inclusive range; also what bounds a slider bound to the parameter."""

    def __init__(self, minimum, maximum) -> None:
        self.minimum, self.maximum = minimum, maximum

    def validate(self, value: Any) -> None:
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"Value must be within [{self.minimum}, {self.maximum}], is {value}")


class Minimum(Validator):
    def __init__(self, minimum) -> None:
        self.minimum = minimum

    def validate(self, value: Any) -> None:
        if value < self.minimum:
            raise ValueError(f"Value must be at least {self.minimum}, is {value}")


class Maximum(Validator):
    def __init__(self, maximum) -> None:
        self.maximum = maximum

    def validate(self, value: Any) -> None:
        if value > self.maximum:
            raise ValueError(f"Value must be at most {self.maximum}, is {value}")


class Choice(Validator):
    """One of ``choices``; also what a combo box bound to a str/int/float/bool parameter lists."""

    def __init__(self, choices) -> None:
        self.choices = choices

    def validate(self, value: Any) -> None:
        if value not in self.choices:
            raise ValueError(f"Value is {value!r}, but must be one of {self.choices}")


class Exclude(Validator):
    def __init__(self, excluded) -> None:
        self.excluded = excluded

    def validate(self, value: Any) -> None:
        if value in self.excluded:
            raise ValueError(f"Value {value!r} is excluded ({self.excluded})")


def split_validators(annotations) -> tuple[list, list]:
    """(validators, other annotations); classes and instances of Validator both count."""
    def is_validator(item) -> bool:
        return isinstance(item, Validator) or (isinstance(item, type) and issubclass(item, Validator))
    return [a for a in annotations if is_validator(a)], [a for a in annotations if not is_validator(a)]
