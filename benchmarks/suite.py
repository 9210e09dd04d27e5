"""The comparative benchmark suite: bare-Kafka limit, PostgreSQL baseline and sdlcflow under the
same load in one run, plus a scaling run (1/2/4 workers x 12/48 partitions).

    .venv/bin/python benchmarks/suite.py [--quick] [--no-scaling]

The same as `sdlcflow bench suite`. Needs Kafka and Cassandra (`sdlcflow up`) and Debian's
PostgreSQL (`make sysdeps`). Writes benchmarks/results/suite[-quick].json and .png.
"""

from __future__ import annotations

import sys

from sdlcflow.bench.commands import bench

if __name__ == "__main__":
    bench.main(["suite", *sys.argv[1:]], prog_name="benchmarks/suite.py")
