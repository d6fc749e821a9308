"""User-facing errors: each names what went wrong and what to do about it."""

from __future__ import annotations


class FtuiError(Exception):
    """An error the UI shows as-is: `problem` says what was wrong, `fix` what to do."""

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} {fix}".strip())


class ConfigError(FtuiError):
    """One or more settings are out of range; `messages` lists each."""

    def __init__(self, messages: list[str]) -> None:
        self.messages = list(messages)
        super().__init__("Settings need fixing: " + "; ".join(self.messages), "")


class DataError(FtuiError):
    """The dataset could not be loaded or used for classification."""


class ModelError(FtuiError):
    """The checkpoint could not be loaded or adapted."""


class HubError(FtuiError):
    """The Hugging Face Hub refused or could not answer."""


class RunInProgress(FtuiError):
    """A second run was asked for while one is still going."""

    def __init__(self, run_name: str) -> None:
        super().__init__(
            f"A run is in progress ({run_name}).",
            "Wait for it to finish or press Stop, then start again.",
        )


class StopRequested(Exception):
    """Raised inside the worker to unwind when the user pressed Stop."""


class Diverged(FtuiError):
    """Training produced a non-finite loss or score (NaN or infinity): the run fails rather than end 'completed'."""

    def __init__(self, what: str, step: int, value: float, hint: str = "") -> None:
        super().__init__(
            f"Training diverged: the {what} became {value} at step {step}, so the run cannot give a usable model.",
            hint
            or "Lower the learning rate, use fp32 precision, or check the labels (regression targets far from 0 need "
            "scaling); then start again.",
        )
