"""DVC stage report (paper grid): every run's metrics -> metrics/paper.json (mean, sample std, n and the
published numbers per row), reports/paper.md (the paper's tables, "ours mean ± std (published)"), plots/paper.png and
plots/paper_backbones.png (Table 6)."""

from common import run

from depthcore.paper.report import write_report


def main(stage):
    paths = stage.paths
    write_report(
        stage.params,
        out_json=paths.paper_metrics,
        out_markdown=paths.paper_report,
        out_figure=paths.paper_figure,
        out_backbones_figure=paths.paper_backbones_figure,
    )
    print(f"wrote {paths.paper_metrics}, {paths.paper_report}, {paths.paper_figure}, {paths.paper_backbones_figure}")


if __name__ == "__main__":
    run(main)
