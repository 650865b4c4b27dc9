"""A problem that fails mid-run, to test that a failing job leaves no MLflow run RUNNING."""

from problems.rosenbrock import Rosenbrock


class Broken(Rosenbrock):
    name = "broken"

    def loss_and_grad(self, x):
        raise RuntimeError("simulated failure inside a job")
