from rest_framework.permissions import BasePermission


class IsRenter(BasePermission):
    message = "Only renters may do this."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and (user.is_renter or user.is_staff))


class IsProviderOwner(BasePermission):
    message = "Only provider owners may do this."

    def has_permission(self, request, view):
        user = request.user
        return bool(user and user.is_authenticated and (user.is_provider_owner or user.is_staff))


class IsStaff(BasePermission):
    message = "Only staff may do this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and request.user.is_staff)
