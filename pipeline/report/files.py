"""The file names of the report directory ``report_dir``, stated once.

::

    report_dir/<run id>/report.html    the run's page (self-contained)
    report_dir/<run id>/metrics.json   the run's flat metrics record
    report_dir/index.html              every run, newest last
    report_dir/history.csv             the same table as CSV
    report_dir/latest                  symlink to the run indexed last
"""
REPORT_FILE = "report.html"
METRICS_FILE = "metrics.json"
INDEX_FILE = "index.html"
HISTORY_FILE = "history.csv"
LATEST_LINK = "latest"
