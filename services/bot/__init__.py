"""The Telegram bot (aiogram 3): registration, payments, status, events, the monthly survey,
join requests to the paid chat, and the inbox of chat messages and voice notes for parse_messages.

`domos bot` runs it with long polling against TELEGRAM_API_URL (the sandbox in tests).
"""
