"""The Telegram Bot API half of the sandbox."""
