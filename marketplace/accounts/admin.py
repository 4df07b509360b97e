from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from marketplace.accounts.models import ApiToken, User


@admin.register(User)
class MarketplaceUserAdmin(UserAdmin):
    list_display = ["username", "email", "role", "is_staff", "is_active", "date_joined"]
    list_filter = ["role", "is_staff", "is_active"]
    fieldsets = [*UserAdmin.fieldsets, ("Marketplace", {"fields": ["role"]})]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["display_prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["user__username", "display_prefix", "name"]
    # The hash is never useful to edit, and tokens are created through the API only.
    readonly_fields = ["user", "key_hash", "display_prefix", "last_used_at", "created_at"]

    def has_add_permission(self, request):
        return False
