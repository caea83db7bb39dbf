"""A second gateway instance in its own process: the same config and database, its own memory and worker.

Usage: python tests/alerts/instance.py CONFIG EMAIL COUNT; prints {"admitted", "refused", "idle"} as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def main() -> None:
    from support import activate
    from support.alerts import burst

    from common.alerts import engine

    config_path, email, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    activate(Path(config_path))
    admitted, refused = burst(email, count)
    idle = engine.wait_idle(60)
    print(json.dumps({"admitted": admitted, "refused": refused, "idle": idle, **engine.stats()}))


if __name__ == "__main__":
    main()
