"""Read a MONAI bundle's configs WITHOUT evaluating code (untrusted path).

Only literal values and ``@reference`` look-ups are resolved. A ``$`` expression is accepted only when it is
a pure literal or a conditional between literals on an ``@reference`` to a literal (interpreted from the AST,
never executed); anything else in a key we need raises :class:`UntrustedCodeError` naming the key.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

from ..errors import ModelError, UntrustedCodeError

#: ``_target_`` names the untrusted path may instantiate (short MONAI names or full paths)
ALLOWED_NETWORKS = {"UNet", "BasicUNet", "SegResNet", "DynUNet", "UNETR", "SwinUNETR", "AttentionUnet",
                    "VNet", "SegResNetDS", "FlexibleUNet"}
ALLOWED_TRANSFORMS = {"Compose", "LoadImaged", "LoadImage", "EnsureChannelFirstd", "EnsureTyped", "Orientationd",
                      "Spacingd", "ScaleIntensityRanged", "ScaleIntensityd", "NormalizeIntensityd",
                      "CropForegroundd", "Activationsd", "AsDiscreted", "Invertd", "SaveImaged", "Lambdad",
                      "CastToTyped", "SlidingWindowInferer", "SliceInferer", "SimpleInferer"}


def short_target(target: str) -> str:
    return str(target).rsplit(".", 1)[-1]


class BundleConfig:
    """``configs/inference.json`` + ``configs/metadata.json`` with safe, literal-only resolution."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        path = self.root / "configs" / "inference.json"
        if not path.is_file():
            raise ModelError(f"MONAI bundle {self.root} has no configs/inference.json "
                             "(YAML bundles are not supported; convert to JSON).")
        self.config = json.loads(path.read_text())
        meta = self.root / "configs" / "metadata.json"
        self.metadata = json.loads(meta.read_text()) if meta.is_file() else {}

    def lookup(self, reference: str) -> Any:
        node: Any = self.config
        for part in reference.split("#"):
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict) and part in node:
                node = node[part]
            else:
                raise ModelError(f"MONAI bundle: reference '@{reference}' not found in inference.json.")
        return node

    def resolve(self, value: Any, key: str, depth: int = 0) -> Any:
        """Literal value of ``value`` (found at ``key``), resolving references; no code is run."""
        if depth > 20:
            raise UntrustedCodeError(f"MONAI bundle: reference loop at '{key}'.")
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{key}#{k}", depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, f"{key}#{i}", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, str) and value.startswith("@"):
            return self.resolve(self.lookup(value[1:]), value[1:], depth + 1)
        if isinstance(value, str) and value.startswith("$"):
            return self._literal_expression(value[1:], key, depth)
        return value

    def _literal_expression(self, text: str, key: str, depth: int) -> Any:
        refuse = UntrustedCodeError(
            f"MONAI bundle: '{key}' is a code expression (${text[:60]}) that is not evaluated for an untrusted "
            "bundle; mark the bundle trusted (`radai models install PATH --trusted`) if you trust its author.")
        try:
            tree = ast.parse(text.replace("@", "REF__").replace("#", "__HASH__"), mode="eval").body
        except SyntaxError:
            raise refuse from None

        def value_of(node: ast.AST) -> Any:
            if isinstance(node, ast.Name) and node.id.startswith("REF__"):
                ref = node.id[5:].replace("__HASH__", "#")
                return self.resolve(self.lookup(ref), ref, depth + 1)
            if isinstance(node, ast.IfExp):
                return value_of(node.body) if value_of(node.test) else value_of(node.orelse)
            if isinstance(node, (ast.List, ast.Tuple)):
                return [value_of(e) for e in node.elts]
            if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
                return -value_of(node.operand)
            if isinstance(node, ast.Constant):
                return node.value
            raise refuse
        return value_of(tree)

    def transforms(self, section: str = "preprocessing") -> list[dict]:
        """The transforms of a Compose section with allow-listed ``_target_`` names (unresolved)."""
        section_value = self.config.get(section, {})
        items = section_value.get("transforms", []) if isinstance(section_value, dict) else section_value
        out = []
        for index, item in enumerate(items if isinstance(items, list) else []):
            if isinstance(item, dict) and "_target_" in item:
                name = short_target(item["_target_"])
                if name not in ALLOWED_TRANSFORMS:
                    raise UntrustedCodeError(f"MONAI bundle: '{section}#transforms#{index}' has _target_ "
                                             f"'{item['_target_']}', which is not on the allow-list; mark the bundle "
                                             "trusted to use it.")
                out.append(dict(item, _index=index, _name=name))
        return out

    def network_def(self) -> tuple[str, dict]:
        definition = self.config.get("network_def")
        if not isinstance(definition, dict) or "_target_" not in definition:
            raise ModelError("MONAI bundle: inference.json has no 'network_def' with a _target_.")
        name = short_target(definition["_target_"])
        if name not in ALLOWED_NETWORKS:
            raise UntrustedCodeError(f"MONAI bundle: 'network_def#_target_' is '{definition['_target_']}', not an "
                                     f"allow-listed MONAI network ({', '.join(sorted(ALLOWED_NETWORKS))}).")
        args = {k: self.resolve(v, f"network_def#{k}") for k, v in definition.items() if k != "_target_"}
        return name, args

    def label_names(self) -> dict[int, str]:
        """Output channel → name from metadata (``network_data_format.outputs.pred.channel_def``)."""
        outputs = self.metadata.get("network_data_format", {}).get("outputs", {})
        for output in outputs.values():
            channel_def = output.get("channel_def")
            if channel_def:
                return {int(k): str(v) for k, v in channel_def.items()}
        for key in ("label_dict", "labels"):
            if isinstance(self.metadata.get(key), dict):
                return {int(k): str(v) for k, v in self.metadata[key].items()}
        return {}
