"""One measurement in a fresh process, so each has its own peak RSS and nothing warm carries over.

    python -m benchmarks.worker NAME OUT_JSON KWARGS_JSON

Writes the measurement's result, plus the process's peak RSS, to OUT_JSON.
"""

from __future__ import annotations

import importlib
import json
import resource
import sys
from pathlib import Path

from benchmarks.common import use_shared_corpus

# name -> module:function; only the module of the measurement that runs is imported
WORKERS = {
    "matmul_peak": "benchmarks.peak:matmul_peak",
    "notebook": "benchmarks.throughput:notebook",
    "project": "benchmarks.throughput:project",
    "tfidf_svm": "benchmarks.quality:tfidf_svm",
}


def main() -> None:
    name, out, kwargs = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    use_shared_corpus()
    module, _, function = WORKERS[name].partition(":")
    result = getattr(importlib.import_module(module), function)(**kwargs)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
