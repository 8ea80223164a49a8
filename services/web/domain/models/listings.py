"""Listings of the nmarket and tradeagent databases: complexes and flats, one layout."""

from __future__ import annotations

from django.db import models

from services.web.domain.fields import UTCDateTimeField as Stamp


def _listing_models(prefix: str) -> tuple[type[models.Model], type[models.Model]]:
    """Complex and flat models of one listings database (the two share one layout)."""
    label = {"nmarket": "Nmarket", "tradeagent": "Tradeagent"}[prefix]
    meta_base = {"managed": False, "app_label": "domain"}
    complex_model = type(
        f"{label}Complex",
        (models.Model,),
        {
            "__module__": __name__,
            "logical_db": prefix,
            "name": models.TextField(),
            "normalized_name": models.TextField(unique=True),
            "district": models.TextField(null=True),
            "developer": models.TextField(null=True),
            "first_seen_at": Stamp(),
            "last_seen_at": Stamp(),
            "__str__": lambda self: self.name,
            "Meta": type(
                "Meta",
                (),
                {
                    **meta_base,
                    "db_table": f"{prefix}_complexes",
                    "verbose_name": f"ЖК {prefix}",
                    "verbose_name_plural": f"ЖК {prefix}",
                },
            ),
        },
    )
    flat_model = type(
        f"{label}Flat",
        (models.Model,),
        {
            "__module__": __name__,
            "logical_db": prefix,
            "complex": models.ForeignKey(complex_model, models.DO_NOTHING),
            "external_key": models.TextField(),
            "building": models.TextField(null=True),
            "rooms": models.IntegerField(null=True),
            "area_dm2": models.IntegerField(null=True),
            "floor": models.IntegerField(null=True),
            "price_minor": models.BigIntegerField(null=True),
            "currency": models.TextField(),
            "commission_text": models.TextField(null=True),
            "commission_bp": models.IntegerField(null=True),
            "last_seen_at": Stamp(),
            "Meta": type(
                "Meta",
                (),
                {
                    **meta_base,
                    "db_table": f"{prefix}_flats",
                    "verbose_name": f"квартира {prefix}",
                    "verbose_name_plural": f"квартиры {prefix}",
                    "ordering": ["-last_seen_at"],
                },
            ),
        },
    )
    return complex_model, flat_model


NmarketComplex, NmarketFlat = _listing_models("nmarket")
TradeagentComplex, TradeagentFlat = _listing_models("tradeagent")
