from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # The management API's token scheme in the OpenAPI schema (a drf-spectacular extension
        # registers itself when its module is imported).
        import accounts.api.schema  # noqa: F401
