"""Hushbrief: a private summary bot for group chats."""

__version__ = "0.1.0"
