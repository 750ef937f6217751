"""DVC stage fetch_data: download NYUv2 (or render the synthetic rooms) into data/raw/."""

from common import run

from depthcore.data.prepare import fetch_data


def main(stage):
    for path in fetch_data(stage.params.data, stage.paths.raw, key=stage.key):
        print(f"ready: {path}")


if __name__ == "__main__":
    run(main)
