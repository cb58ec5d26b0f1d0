"""Telegram, through python-telegram-bot: see ``adapter`` for what the adapter decides."""

from hushbrief.adapters.telegram.adapter import TelegramAdapter, TelegramStartError

__all__ = ["TelegramAdapter", "TelegramStartError"]
