"""Serializer fields that take the JSON types the schema documents, nothing else.

DRF's fields are lenient where the OpenAPI schema is not: a `CharField` stores
the number 0 as "0", a `UUIDField` reads the number 5 as a UUID, a
`BooleanField` takes 0, 1, "yes" and "on". The schema says `type: string` or
`type: boolean`, so a client relying on the leniency would break on any other
implementation of the contract; the strict variants here answer any other
JSON type with a 400 (`validation_error`). Form and multipart bodies (auth,
uploads) carry only text, which strict text fields take as before.

Every API serializer builds its fields from here: `StrictModelSerializer` maps
model fields to the strict variants, declared fields use them by name
(`tests/api/test_contract.py` holds every API serializer to that).

Public surface:
    StrictCharField, StrictEmailField, StrictSlugField, StrictURLField,
    StrictUUIDField, StrictIPAddressField, StrictChoiceField   strings only
    StrictBooleanField      JSON's true or false only
    JSONObjectField         a JSON object, documented as one
    StrictModelSerializer   a ModelSerializer whose generated fields are strict
                            (text ones at most DEFAULT_TEXT_MAX_CHARS long)
"""

from __future__ import annotations

import json
from typing import Any

from django.db import models
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.utils.json import strict_constant

from core.text import (
    INVALID_TEXT_MESSAGE,
    TOO_DEEP_MESSAGE,
    invalid_text_path,
    is_too_deep,
)

NOT_A_STRING_MESSAGE = "Not a valid string."


class StringOnlyMixin:
    """Refuses any input that is not a string, or longer than the field's
    `max_length`, before the field reads it.

    DRF checks `max_length` with a validator that runs after the field's own
    validators, so a uniqueness lookup (`UniqueValidator`) would send a
    100,000-character value to the database first; here the size is checked
    before any validator, and so before any query.
    """

    default_error_messages = {"not_a_string": NOT_A_STRING_MESSAGE}

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str):
            self.fail("not_a_string")
        max_length = getattr(self, "max_length", None)
        if max_length is not None and len(data) > max_length:
            self.fail("max_length", max_length=max_length)
        return super().to_internal_value(data)


class StrictCharField(StringOnlyMixin, serializers.CharField):
    pass


class StrictEmailField(StringOnlyMixin, serializers.EmailField):
    pass


class StrictSlugField(StringOnlyMixin, serializers.SlugField):
    pass


class StrictURLField(StringOnlyMixin, serializers.URLField):
    pass


class StrictUUIDField(StringOnlyMixin, serializers.UUIDField):
    pass


class StrictIPAddressField(StringOnlyMixin, serializers.IPAddressField):
    pass


class StrictChoiceField(serializers.ChoiceField):
    """Choices that are all strings take only a string (DRF looks up `str(data)`,
    so a number or a list could spell one)."""

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, str) and all(isinstance(c, str) for c in self.choices):
            self.fail("invalid_choice", input=data)
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """JSON's `true` or `false`, as documented (DRF also reads 0, 1, "yes", "on"
    and more as booleans)."""

    def to_internal_value(self, data: Any) -> bool:
        if isinstance(data, bool):
            return data
        self.fail("invalid", input=data)


@extend_schema_field({"type": "object", "additionalProperties": {}})
class JSONObjectField(serializers.JSONField):
    """A JSON field whose value must be an object, and is documented as one
    (a bare `JSONField` is documented as any JSON value)."""

    default_error_messages = {
        "not_an_object": "Must be a JSON object.",
        "invalid_text": INVALID_TEXT_MESSAGE,
        "too_deep": TOO_DEEP_MESSAGE,
    }

    def to_internal_value(self, data: Any) -> Any:
        if getattr(data, "is_json_string", False):
            # A form field's JSON text; decoded as strictly as a JSON body
            # (no NaN or Infinity, which a JSON column cannot store).
            try:
                data = json.loads(data, parse_constant=strict_constant)
            except RecursionError:
                self.fail("too_deep")
            except ValueError:
                self.fail("invalid")
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            self.fail("not_an_object")
        # Form JSON is only decoded here, after the parsers checked the
        # request; its escapes can spell NUL or a lone surrogate.
        if is_too_deep(value):
            self.fail("too_deep")
        if invalid_text_path(value):
            self.fail("invalid_text")
        return value


#: The longest text a generated field takes when its model field sets no
#: length (a `TextField`); a serializer raises it for a field that needs more
#: (an agent's instructions) with `extra_kwargs`.
DEFAULT_TEXT_MAX_CHARS = 10_000


# No docstring: drf-spectacular would document it as every subclass's description.
class StrictModelSerializer(serializers.ModelSerializer):
    # The fields a ModelSerializer generates for text, choices and booleans.
    serializer_field_mapping = {
        **serializers.ModelSerializer.serializer_field_mapping,
        models.BooleanField: StrictBooleanField,
        models.CharField: StrictCharField,
        models.TextField: StrictCharField,
        models.SlugField: StrictSlugField,
        models.EmailField: StrictEmailField,
        models.URLField: StrictURLField,
        models.UUIDField: StrictUUIDField,
        models.GenericIPAddressField: StrictIPAddressField,
    }
    serializer_choice_field = StrictChoiceField

    def build_standard_field(self, field_name, model_field):
        field_class, field_kwargs = super().build_standard_field(
            field_name, model_field
        )
        # Every writable text field has a maximum length, checked before any
        # query (`StringOnlyMixin`); read-only fields drop it again.
        if isinstance(model_field, models.TextField) and "max_length" not in (
            field_kwargs
        ):
            field_kwargs["max_length"] = DEFAULT_TEXT_MAX_CHARS
        return field_class, field_kwargs
