"""``python -m depthcore.pipeline write``: regenerate ``dvc.yaml`` from the stage specs (``make pipeline``).
``python -m depthcore.pipeline partials [--remove]``: list the unfinished work left beside DVC outputs; with
``--remove``, delete what is stale (its stage is complete and up to date), as ``make repro`` does."""

from __future__ import annotations

import argparse

from depthcore.config.paths import MAIN_DVC_FILE
from depthcore.pipeline.spec import write_main


def partials(remove: bool) -> None:
    from depthcore.pipeline.partials import remove_stale, unfinished_work

    found = unfinished_work()
    removed = remove_stale(found) if remove else []
    for item in found:
        print(("removed " if item in removed else "") + item.describe())
    if any(item.stale for item in found) and not remove:
        print("remove the stale ones with `python -m depthcore.pipeline partials --remove`")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["write", "partials"])
    parser.add_argument("--remove", action="store_true", help="partials: delete the stale ones")
    args = parser.parse_args()
    if args.command == "partials":
        partials(args.remove)
        return
    write_main()
    print(f"wrote {MAIN_DVC_FILE}")


if __name__ == "__main__":
    main()
