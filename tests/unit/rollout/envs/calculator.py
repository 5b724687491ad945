"""A TRL-style environment for the tests: a calculator whose answer the reward checks."""

import time


class Calculator:
    def __init__(self):
        self.answer = None
        self.target = None

    def reset(self, **row):
        self.answer, self.target = None, row.get("answer")
        return row.get("hint")

    def multiply(self, a: int, b: int) -> int:
        """Multiply two integers.

        Args:
            a: The first factor.
            b: The second factor.
        """
        return a * b

    def divide(self, a: int, b: int) -> float:
        """Divide one integer by another.

        Args:
            a: The dividend.
            b: The divisor.
        """
        return a / b

    def wait(self, seconds: float) -> str:
        """Wait, then say so.

        Args:
            seconds: How long to wait.
        """
        time.sleep(seconds)
        return "done"

    def spin(self, n: int) -> int:
        """Count forever (a tool that hangs in pure Python).

        Args:
            n: Ignored.
        """
        while True:
            n += 1

    def reward(self) -> float:
        return 0.0
