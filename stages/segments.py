"""DVC stage segments: data/prepared/dataset.zarr (+ SAM weights) -> data/features/segments.zarr and
the alignment summary metrics/segments.json."""

from common import run

from depthcore.config import SamConfig, SegmentsConfig
from depthcore.data.store import write_json_atomic
from depthcore.segments import summarize_segments, write_segments

DATASET = "data/prepared/dataset.zarr"
WEIGHTS_DIR = "data/weights"
OUT = "data/features/segments.zarr"
METRICS = "metrics/segments.json"


def main(params):
    cfg = SegmentsConfig.from_params(params.get("segments"), prefix="segments")
    sam_cfg = SamConfig.from_params(params.get("sam"), prefix="sam")
    out = write_segments(cfg, sam_cfg, DATASET, OUT, weights_dir=WEIGHTS_DIR)
    summary = summarize_segments(out, DATASET)
    write_json_atomic(METRICS, summary)
    print(f"wrote {out} and {METRICS}: {summary['all']}")


if __name__ == "__main__":
    run(main)
