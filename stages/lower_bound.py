"""DVC stage lower_bound (paper grid, --seed K): the paper's lower bound, uniform random depth in (0, 10] m,
evaluated with the shared protocol -> metrics/paper/t1_lower_bound/seed<K>.json."""

from common import run

from depthcore.config.paths import run_metrics_path
from depthcore.data.store import Store
from depthcore.evaluation.baselines import lower_bound_metrics
from depthcore.io import write_json_atomic
from depthcore.paper.rows import LOWER_BOUND


def main(stage):
    p = stage.params
    metrics = lower_bound_metrics(Store(stage.paths.dataset), cfg=p.eval, seed=p.seed)
    write_json_atomic(run_metrics_path(LOWER_BOUND, p.seed), metrics)
    print(f"lower bound, seed {p.seed}: {metrics}")


if __name__ == "__main__":
    run(main)
