"""Parameters and MACs of every downsampling operator in every architecture, as a Markdown table.

    python -m tools.operator_table                # from the repository root (reads its conf/)
    python -m tools.operator_table --conf-dir /path/to/conf
    python -m tools.operator_table --arch resnet vgg   # the table of docs/architectures.md

Each operator gets the window its conf/model/<name>.yaml sets; in ``allcnn_c`` the window is
replaced by Model C's 3x3 stride-2 one (MODEL_C_WINDOW, as conf/experiment/allcnn_c_family.yaml sets),
except for ``none``, which has no window. ``published`` is listed for the architectures rebuilt by
downsampling surgery only. A combination that cannot run is shown as "invalid".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from poolstudy.errors import InvalidModelError, PoolStudyError
from poolstudy.models import DOWNSAMPLERS, create_model
from poolstudy.models.allcnn import MODEL_C_WINDOW
from poolstudy.models.profile import count_macs, count_params, trace_shapes

#: (label, input shape): MNIST and CIFAR-10 resolution
CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
RESOLUTIONS = (("28x28x1", (1, 28, 28)), ("32x32x3", (3, 32, 32)))
#: (architecture, extra constructor arguments): each architecture at its defaults, and All-CNN-C
#: also at the reduced width of conf/experiment/allcnn_c_family.yaml; ResNet-20 and VGG-11 rebuilt by
#: downsampling surgery
VARIANTS = (("lenet", {}), ("allcnn_c", {}), ("allcnn_c", {"width": 0.25}), ("resnet", {"depth": 20}),
            ("vgg", {"depth": 11}))


def operator_configs(conf_dir: Path) -> dict[str, dict[str, Any]]:
    """``model.downsample`` of every registered operator, read from conf/model/<name>.yaml."""
    configs = {}
    for name in DOWNSAMPLERS:
        path = conf_dir / "model" / f"{name}.yaml"
        if not path.is_file():
            raise PoolStudyError(f"{path} not found: every registered operator needs conf/model/<name>.yaml "
                                 f"(run from the repository root or pass --conf-dir).")
        configs[name] = OmegaConf.to_container(OmegaConf.load(path).downsample)
    return configs


def downsample_for(arch: str, downsample: dict[str, Any]) -> dict[str, Any]:
    if arch == "allcnn_c" and downsample["type"] != "none":
        return {**downsample, **MODEL_C_WINDOW}
    return dict(downsample)


def measure(arch: str, downsample: dict[str, Any], input_shape: tuple[int, int, int],
            **arch_args: Any) -> tuple[int, int] | None:
    """(params, MACs) at ``input_shape`` with 10 classes, or None when the shapes cannot work."""
    model = create_model(arch, in_channels=input_shape[0], num_classes=10, downsample=downsample, **arch_args)
    try:
        trace_shapes(model, input_shape)
    except InvalidModelError:
        return None
    return count_params(model), count_macs(model, input_shape)


def window(downsample: dict[str, Any]) -> str:
    return ", ".join(f"{k}={'null' if v is None else v}" for k, v in downsample.items() if k != "type")


def markdown_table(conf_dir: Path, archs: list[str] | None = None) -> str:
    """The table of every operator in every ``VARIANTS`` entry (those of ``archs`` only, when given)."""
    operators = operator_configs(conf_dir)
    header = ["arch", "model", "model.downsample"]
    for label, _ in RESOLUTIONS:
        header += [f"params {label}", f"MACs {label}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for arch, arch_args in VARIANTS:
        if archs is not None and arch not in archs:
            continue
        label = " ".join([arch, *(f"{k}={v}" for k, v in arch_args.items())])
        for name, base in operators.items():
            if DOWNSAMPLERS[name].at_points == "published" and arch in ("lenet", "allcnn_c"):
                continue  # they build their points from the registry: no published network to keep
            downsample = downsample_for(arch, base)
            cells = [label, name, window(downsample)]
            for _, shape in RESOLUTIONS:
                result = measure(arch, downsample, shape, **arch_args)
                cells += [f"{result[0]:,}", f"{result[1]:,}"] if result else ["invalid", "invalid"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conf-dir", type=Path, default=CONF_DIR, help=f"the project's conf/ (default: {CONF_DIR})")
    parser.add_argument("--arch", nargs="+", choices=sorted({arch for arch, _ in VARIANTS}),
                        help="these architectures only (default: all)")
    args = parser.parse_args(argv)
    try:
        print(markdown_table(args.conf_dir, args.arch))
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
