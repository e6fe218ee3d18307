"""Run by test_trainer in a subprocess: trains, then SIGKILLs itself after a given optimiser step."""

import json
import os
import signal
import sys

from contrastlab.train import StepState, train, validate_config


def main() -> None:
    raw, run_dir, kill_at = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])

    def die(state: StepState) -> None:
        if state.global_step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(validate_config(raw), run_dir, raw_config=raw, on_step=die, progress=False)


if __name__ == "__main__":
    main()
