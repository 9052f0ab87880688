"""A request an endpoint refuses, with the status, message and code the client gets in
OpenAI's error shape (app.py's handler answers it)."""

from __future__ import annotations


class Refused(Exception):
    def __init__(self, status: int, message: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
