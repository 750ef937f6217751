"""DVC stage prepare: data/raw/ -> data/prepared/dataset.zarr (one layout for every source)."""

from common import run

from depthcore.config import DataConfig
from depthcore.data.prepare import prepare_dataset

RAW_DIR = "data/raw"
OUT = "data/prepared/dataset.zarr"


def main(params):
    cfg = DataConfig.from_params(params.get("data"), prefix="data")
    print(f"wrote {prepare_dataset(cfg, RAW_DIR, OUT)}")


if __name__ == "__main__":
    run(main)
