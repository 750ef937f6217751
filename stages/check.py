"""DVC stage check: the whole params.yaml validated (every section, every plugin's settings, the
cross-section rules, and the ``paper`` section against paper/rows.yaml as ``make paper`` checks it) whenever it
changes -> data/checks/params.ok, whose content never changes."""

from common import run

from depthcore.io import write_text_atomic
from depthcore.paper.rows import check_paper


def main(stage):
    check_paper(stage.params)
    write_text_atomic(stage.paths.params_check, "params.yaml is valid (stages/check.py)\n")
    print("params.yaml is valid")


if __name__ == "__main__":
    run(main)
