"""Tokens of the advert and contract databases: one layout, a table `tokens` in each."""

from __future__ import annotations

from django.db import models

from services.web.domain.fields import UTCDateTimeField as Stamp


class TokenBase(models.Model):
    token_prefix = models.TextField()
    issued_to = models.TextField(null=True)
    issued_by = models.TextField(null=True)
    scope = models.TextField(null=True)
    note = models.TextField(null=True)
    created_at = Stamp()
    expires_at = Stamp(null=True)
    revoked_at = Stamp(null=True)
    revoked_reason = models.TextField(null=True)
    max_uses = models.IntegerField(null=True)
    use_count = models.IntegerField()
    last_used_at = Stamp(null=True)

    class Meta:
        abstract = True
        managed = False


class AdvertToken(TokenBase):
    logical_db = "advert"

    class Meta(TokenBase.Meta):
        db_table = "tokens"
        verbose_name = "токен объявлений"
        verbose_name_plural = "токены объявлений"


class ContractToken(TokenBase):
    logical_db = "contract"

    class Meta(TokenBase.Meta):
        db_table = "tokens"
        verbose_name = "токен договоров"
        verbose_name_plural = "токены договоров"
