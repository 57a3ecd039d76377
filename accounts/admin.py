"""Admin for users (Django's UserAdmin with the role and UUID-era fields) and,
read-only and without their values, users' secrets."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from accounts.models import Secret, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "role", "is_active", "is_staff", "created_at")
    list_filter = ("role", "is_active", "is_staff", "is_superuser")
    search_fields = ("username", "email", "first_name", "last_name")
    ordering = ("username",)
    readonly_fields = ("created_at", "last_login", "date_joined")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Agentry", {"fields": ("role", "created_at")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": ("username", "email", "role", "password1", "password2"),
            },
        ),
    )


@admin.register(Secret)
class SecretAdmin(admin.ModelAdmin):
    """Names and use of secrets; the value (even encrypted) is never shown.

    Values are set only by their owners through the API, so the admin cannot
    add or change one; deleting one is allowed (tools naming it then fail).
    """

    list_display = ("name", "owner", "created_at", "last_used_at")
    list_filter = ("created_at", "last_used_at")
    search_fields = ("name", "owner__username")
    fields = ("name", "owner", "created_at", "last_used_at")
    readonly_fields = fields
    list_select_related = ("owner",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
