"""Filters of list endpoints: a query parameter is either absent or valid.

django-filter skips a filter whose parameter is empty, and its boolean field
reads anything it does not know (`?is_active=yes`, even `?is_active=1`) as
"not given", so a client's typo silently widens the list it gets back. Here a
filter parameter that is present must hold a value of its documented type:
`?agent=`, `?status=` or `?is_active=maybe` are a 400. Only text filters
(`CharFilter`) take the empty string.

Public surface:
    StrictBooleanFilter, StrictFilterSet   the strict filters above
    BoundedSearchFilter    `?search=` with a bound on its length and words
"""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from rest_framework.exceptions import ValidationError
from rest_framework.filters import SearchFilter

EMPTY_MESSAGE = "May not be empty; leave the parameter out instead."


class StrictBooleanField(forms.NullBooleanField):
    """`true`/`false` (or `1`/`0`); anything else is refused, not read as absent."""

    # The stock select widget maps unknown values to None before validation.
    widget = forms.TextInput

    def to_python(self, value: Any) -> bool | None:
        if value is None:
            return None
        text = str(value).strip().lower()
        if text in ("true", "1"):
            return True
        if text in ("false", "0"):
            return False
        raise forms.ValidationError("Must be true or false.", code="invalid")


class StrictBooleanFilter(django_filters.BooleanFilter):
    field_class = StrictBooleanField


class StrictFilterSet(django_filters.FilterSet):
    """A FilterSet that refuses a present but empty parameter of a non-text filter."""

    def get_form_class(self) -> type[forms.Form]:
        form_class = super().get_form_class()
        text_filters = frozenset(
            name
            for name, filter_ in self.filters.items()
            if isinstance(filter_, django_filters.CharFilter)
        )

        def clean(form: forms.Form) -> dict[str, Any]:
            cleaned = super(form_class, form).clean()
            for name in form.fields:
                if (
                    name not in text_filters
                    and form.data.get(form.add_prefix(name)) == ""
                    and name not in form.errors
                ):
                    form.add_error(name, EMPTY_MESSAGE)
            return cleaned

        return type(form_class.__name__, (form_class,), {"clean": clean})


#: A search of more words is refused: each word adds a clause over every
#: searched field, and SQLite refuses expressions nested past 1,000 levels.
MAX_SEARCH_TERMS = 20
#: Longer searches are refused: a LIKE pattern past SQLite's 50,000 bytes is
#: an error, and no title or name is this long.
MAX_SEARCH_CHARS = 500


class BoundedSearchFilter(SearchFilter):
    """DRF's `?search=`, refusing (400) a search too long or of too many words
    to run as one query."""

    def get_search_terms(self, request) -> list[str]:
        raw = request.query_params.get(self.search_param, "")
        if len(raw) > MAX_SEARCH_CHARS:
            raise ValidationError(
                {self.search_param: [f"At most {MAX_SEARCH_CHARS} characters."]}
            )
        terms = super().get_search_terms(request)
        if len(terms) > MAX_SEARCH_TERMS:
            raise ValidationError(
                {self.search_param: [f"At most {MAX_SEARCH_TERMS} words."]}
            )
        return terms
