from rest_framework import serializers

from marketplace.accounts.models import User


class SignupInputSerializer(serializers.Serializer):
    username = serializers.RegexField(r"^[\w.@+-]{3,150}$", max_length=150)
    password = serializers.CharField(min_length=8, max_length=128, write_only=True)
    email = serializers.EmailField(required=False, allow_blank=True, default="")
    role = serializers.ChoiceField(choices=User.Role.choices)


class LoginInputSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=128, write_only=True)
    token_name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")


class UserOutputSerializer(serializers.ModelSerializer):
    # Blank when the user gave none, so the schema must not promise `format: email`.
    email = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ["id", "username", "email", "role", "is_staff", "date_joined"]
        read_only_fields = fields


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()
    user = UserOutputSerializer()
