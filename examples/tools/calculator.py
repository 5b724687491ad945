"""The calculator the model may call, in TRL's environment_factory contract.

`reset` receives the row's fields (nothing is needed here); `mul` is the one tool: its type
hints and docstring become the JSON schema shown to the model. The job's grader checks the
final answer, so the class defines no reward().
"""


class Calculator:
    def reset(self, **row) -> None:
        return None

    def mul(self, a: int, b: int) -> int:
        """Multiply two integers.

        Args:
            a: The first factor.
            b: The second factor.
        """
        return a * b
