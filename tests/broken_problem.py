"""A problem that fails mid-run, to test that a failing job leaves no MLflow run RUNNING.

``fail=false`` makes a working Rosenbrock, so one sweep can hold a failing group and working ones;
``HARNESS_TEST_HEALED=1`` in the environment makes every group work (the same configs, so a rerun
resumes the sweep)."""

import os

from problems.rosenbrock import Rosenbrock


class Broken(Rosenbrock):
    name = "broken"

    def __init__(self, fail: bool = True, **kw):
        super().__init__(**kw)
        self.fail = fail

    def loss_and_grad(self, x, t=None):
        if self.fail and not os.environ.get("HARNESS_TEST_HEALED"):
            raise RuntimeError("simulated failure inside a job")
        return super().loss_and_grad(x, t)
