"""``python -m depthcore.pipeline write``: regenerate ``dvc.yaml`` from the stage specs (``make pipeline``).
``python -m depthcore.pipeline partials [--remove]``: list the unfinished work left beside DVC outputs; with
``--remove``, delete what is stale (its stage is complete and up to date), as ``make repro`` does.
``python -m depthcore.pipeline verify [PATH...]``: check every DVC-tracked output (or those at PATH) byte for byte
against the checksums DVC recorded; print each corrupt one with the command that repairs it; exit 1 if any is.
``python -m depthcore.pipeline repair [PATH...]``: repair the corrupt ones (all, upstream first, or those at PATH):
from the DVC cache where it holds intact bytes, else the corrupt cache object is deleted and the output recomputed
(``depthcore/pipeline/verify.py``)."""

from __future__ import annotations

import argparse
import sys

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
    parser.add_argument("command", choices=["write", "partials", "verify", "repair"])
    parser.add_argument("paths", nargs="*", help="verify, repair: outputs (or paths inside one); default all")
    parser.add_argument("--remove", action="store_true", help="partials: delete the stale ones")
    args = parser.parse_args()
    if args.command in ("verify", "repair"):
        from depthcore.pipeline.verify import main_repair, main_verify

        sys.exit((main_verify if args.command == "verify" else main_repair)(args.paths or None))
    if args.command == "partials":
        partials(args.remove)
        return
    write_main()
    print(f"wrote {MAIN_DVC_FILE}")


if __name__ == "__main__":
    main()
