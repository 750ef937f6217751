"""DVC stage check: the whole params.yaml validated (every section, every plugin's settings, the
cross-section rules) whenever it changes -> data/checks/params.ok, whose content never changes."""

from common import run

from depthcore.io import write_text_atomic


def main(stage):
    write_text_atomic(stage.paths.params_check, "params.yaml is valid (stages/check.py)\n")
    print("params.yaml is valid")


if __name__ == "__main__":
    run(main)
