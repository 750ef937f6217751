"""DVC stage fetch_data: download NYUv2 (or render the synthetic rooms) into data/raw/."""

from common import run

from depthcore.config import DataConfig
from depthcore.data.prepare import fetch_data

RAW_DIR = "data/raw"


def main(params):
    cfg = DataConfig.from_params(params.get("data"), prefix="data")
    for path in fetch_data(cfg, RAW_DIR):
        print(f"ready: {path}")


if __name__ == "__main__":
    run(main)
