"""Errors that mean "your input is wrong": the CLI prints them as one line, without a traceback."""


class UserError(Exception):
    """A problem the user can fix (bad path, bad parameter, bad file)."""


class DataError(UserError):
    """A dataset problem. The message names the file and what is wrong with it."""

    def __init__(self, path, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")
