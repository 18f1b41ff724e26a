"""Errors raised by the prompt registry's core: definitions, variables, templates."""

from __future__ import annotations


class PromptError(Exception):
    """Base class of every prompt registry error."""


class InvalidPrompt(PromptError):
    """An invalid prompt definition.

    The message is ``WHERE: PATH: PROBLEM``, where ``where`` names the file (if
    any) and ``path`` the field, such as ``messages[1].content``.
    """

    def __init__(self, problem: str, path: str = "", where: str = "") -> None:
        super().__init__(": ".join(part for part in (where, path, problem) if part))
        self.problem = problem
        self.path = path
        self.where = where


class VariableError(PromptError):
    """Request variables that do not fit the prompt's declared variables.

    ``variable`` is the name of the offending variable.
    """

    def __init__(self, message: str, variable: str) -> None:
        super().__init__(message)
        self.variable = variable


class TemplateError(PromptError):
    """A template that failed while rendering.

    Causes are a blocked sandbox operation, output over the size cap and errors
    raised by the template's own expressions.
    """


class InvalidReference(PromptError):
    """Invalid text for a prompt name, reference, label, version or bump level."""
