"""`python -m app.cli worker`, but sending with the aiohttp sender measured for issue 10
(bench/aiohttp_sender.py) instead of the service's own. Benchmarks only:

    python bench/aiohttp_worker.py        # same environment as the real worker
"""
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import aiohttp_sender  # noqa: E402
from app.cli import main  # noqa: E402
from app.jobs import runtime  # noqa: E402

runtime.PushSender = aiohttp_sender.PushSender  # WorkerContext builds its sender through this name

if __name__ == "__main__":
    sys.exit(main(["worker"]))
