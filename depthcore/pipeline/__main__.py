"""``python -m depthcore.pipeline write``: regenerate ``dvc.yaml`` from the stage specs (``make pipeline``)."""

from __future__ import annotations

import argparse

from depthcore.config.paths import MAIN_DVC_FILE
from depthcore.pipeline.spec import write_main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", choices=["write"])
    parser.parse_args()
    write_main()
    print(f"wrote {MAIN_DVC_FILE}")


if __name__ == "__main__":
    main()
