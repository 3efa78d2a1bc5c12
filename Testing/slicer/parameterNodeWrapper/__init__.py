"""Test stand-in for ``slicer.parameterNodeWrapper`` (absent from the headless Slicer core), as strict
as Slicer >= 5.10: values serialized into the parameter node, validators on every write, and GUI
bindings only for the widget-class / type pairs Slicer has a connector for (``guiConnectors.RULES``).
Written from Slicer's documented behaviour; never shipped (lives under ``Testing/``)."""
from .guiConnectors import RULES, ConnectorRule, rule_for
from .types import Decimals, Default, SingleStep
from .validators import (Choice, Exclude, IsInstance, IsNone, Maximum, Minimum, NotNone, Validator,
                         WithinRange)
from .wrapper import SlicerParameterNamePropertyName, isParameterNodeWrapper, parameterNodeWrapper

#: the Slicer releases whose rules these stand-ins implement (RadAI's declared minimum and later)
SLICER_RULES_FROM = "5.10"

__all__ = ["parameterNodeWrapper", "isParameterNodeWrapper", "SlicerParameterNamePropertyName", "Default",
           "Decimals", "SingleStep", "Validator", "NotNone", "IsNone", "IsInstance", "WithinRange", "Minimum",
           "Maximum", "Choice", "Exclude", "RULES", "ConnectorRule", "rule_for", "SLICER_RULES_FROM"]
