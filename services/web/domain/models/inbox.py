"""The bot's inbox (chat messages, the usefulness rules and their matches) and audio files."""

from __future__ import annotations

from django.db import models

from services.web.domain.fields import UTCDateTimeField as Stamp


class ChatMessage(models.Model):
    logical_db = "useful"
    chat_id = models.BigIntegerField()
    message_id = models.BigIntegerField()
    chat_title = models.TextField(null=True)
    from_username = models.TextField(null=True)
    kind = models.TextField()
    text = models.TextField(null=True)
    message_date = Stamp()
    received_at = Stamp()
    parse_status = models.TextField()
    parse_error = models.TextField(null=True)

    class Meta:
        managed = False
        db_table = "chat_messages"
        verbose_name = "сообщение чата"
        verbose_name_plural = "входящие сообщения"
        ordering = ("-id",)


class UsefulRule(models.Model):
    logical_db = "useful"
    kind = models.TextField(
        "вид", choices=[(k, k) for k in ("hashtag", "keyword", "link", "regex")]
    )
    pattern = models.TextField("шаблон")
    weight = models.IntegerField("вес", default=1)
    is_active = models.BooleanField("действует", default=True)
    created_at = Stamp("создано", auto_now_add=True)

    class Meta:
        managed = False
        db_table = "useful_rules"
        verbose_name = "правило полезности"
        verbose_name_plural = "правила полезности"


class UsefulMessage(models.Model):
    logical_db = "useful"
    chat_message = models.OneToOneField(ChatMessage, models.DO_NOTHING)
    chat_id = models.BigIntegerField()
    message_id = models.BigIntegerField()
    matched_rules = models.JSONField()
    score = models.IntegerField()
    text = models.TextField(null=True)
    message_date = Stamp()

    class Meta:
        managed = False
        db_table = "useful_messages"
        verbose_name = "полезное сообщение"
        verbose_name_plural = "полезные сообщения"
        ordering = ("-message_date",)


class AudioFile(models.Model):
    logical_db = "audio"
    file_unique_id = models.TextField(unique=True)
    kind = models.TextField()
    chat_id = models.BigIntegerField()
    message_id = models.BigIntegerField()
    from_user_id = models.BigIntegerField(null=True)
    duration_s = models.IntegerField(null=True)
    size_bytes = models.BigIntegerField(null=True)
    status = models.TextField()
    path = models.TextField(null=True)
    attempts = models.IntegerField()
    last_error = models.TextField(null=True)
    downloaded_at = Stamp(null=True)
    created_at = Stamp()

    class Meta:
        managed = False
        db_table = "audio_files"
        verbose_name = "аудио"
        verbose_name_plural = "аудио"
        ordering = ("-id",)
