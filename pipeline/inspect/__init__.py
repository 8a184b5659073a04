"""Looking at what the pipeline wrote, without Luigi: one idea per module.

::

    describe   readable summaries of loaded objects (arrays, DataFrames, dicts, saved models)
    select     the part of a loaded object at ``--key`` (dict key, dotted path, column, index)
    export     a loaded object (or part) as .npz or .csv for other tools
    artifacts  open any file under the data or report directory, verified before it is parsed
    integrity  rehash an output directory (or the raw download, or the bundled mirror) against its record
    outputs    every entry under the data and report directories: what it is, its size, its integrity
    runs       the run history of a report directory, and run ids resolved with nearest-match hints
    lineage    the outputs a run used, as its manifests recorded them
    status     a task's state (COMPLETE, PENDING, STALE) from its reasons, and the tree as text
    mcnemar    McNemar's test of two classifiers on the same test set
    compare    two runs side by side: parameters, metrics, McNemar's test, per-class changes
    gc         which outputs the newest runs do not use, and their removal
    errors     NotFound, the one error for what is not there

Nothing here imports luigi or the tasks: callers (the ``mnist-pipeline`` command) pass paths in.
"""
