"""The report: one self-contained HTML page per run, and the index of all runs.

One idea per module; import the one you need (``from pipeline.report import page``):

    files       the file names of the report directory, stated once
    render      the Jinja environment and the cell formats shared by the pages
    tables      how a table is shown: one header row, missing values marked, each fact once
    page        one run's page: any stage rendered generically from its result.json, plus acquisition
    metrics     the flat metrics.json record of a run (what the index and cron jobs read)
    comparison  this run against the previous and the best run of its report directory (McNemar's test)
    narrative   the sentences the page opens with: what ran, the result, how it compares
    provenance  the code, software, checkout and data that made the run, from the manifests
    index       the run history: index.html, history.csv and the ``latest`` link
    trends      the index's charts across runs, as inline SVG
    templates/  report.html.j2 and index.html.j2

This package imports nothing itself, so ``pipeline.report.files`` stays cheap for the task layer.
"""
