"""Model evaluation: the metrics protocol, the baselines beside every model, reports, figures and the report
stages (evaluate, zeroshot_report, segments_report)."""
