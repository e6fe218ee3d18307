"""Run by test_verdict in a subprocess: a verdict that SIGKILLs itself during its k-th training run."""

import os
import signal
import sys

import contrastlab.experiments.arms as arms  # where the arms are trained
import contrastlab.experiments.verdict as vm  # the module, not contrastlab.verdict


def main() -> None:
    recipe, out, kill_in_run = sys.argv[1], sys.argv[2], int(sys.argv[3])
    runs = {"n": 0}
    real = arms.train

    def train(*args, **kwargs):
        runs["n"] += 1
        if runs["n"] == kill_in_run:  # die in this run's second epoch, after its first checkpoint

            def die(state):
                if state.epoch == 1:
                    os.kill(os.getpid(), signal.SIGKILL)

            kwargs["on_step"] = die
        return real(*args, **kwargs)

    arms.train = train
    treatment = ["objective.supcon.weight=0.5"]
    vm.run_verdict(recipe, treatment=treatment, seeds=2, out_dir=out, progress=False)


if __name__ == "__main__":
    main()
