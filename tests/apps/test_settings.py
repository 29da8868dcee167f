"""App profiles in the settings: ``CLOUDREC_APPS__<NAME>__...`` beside the app "default", which is
today's single app under its setting names of always."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config import DEFAULT_APP, Settings
from worker.logs import settings_secrets

SCHOOL = {
    "CLOUDREC_APPS__SCHOOL__APP_ID": "school-app-id",
    "CLOUDREC_APPS__SCHOOL__CUSTOMER_ID": "school-customer",
    "CLOUDREC_APPS__SCHOOL__CUSTOMER_SECRET": "school-customer-secret",
    "CLOUDREC_APPS__SCHOOL__API_RATE_LIMIT": "4",
    "CLOUDREC_APPS__SCHOOL__NCS_SECRET": "school-ncs-secret",
}


def settings_from(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_the_default_app_is_the_single_app_settings_of_always(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from(
        monkeypatch,
        {
            "CLOUDREC_APP_ID": "main-app",
            "CLOUDREC_CUSTOMER_ID": "main-customer",
            "CLOUDREC_CUSTOMER_SECRET": "main-customer-secret",
            "CLOUDREC_API_RATE_LIMIT": "7",
            "CLOUDREC_NCS_SECRET": "main-ncs-secret",
        },
    )
    default = settings.app_profile("default")
    assert list(settings.app_profiles()) == [DEFAULT_APP]
    assert default.app_id == "main-app"
    assert default.customer_id == "main-customer"
    assert default.customer_secret.get_secret_value() == "main-customer-secret"
    assert default.api_rate_limit == 7
    assert default.ncs_secret is not None
    assert default.ncs_secret.get_secret_value() == "main-ncs-secret"
    # the top-level names still read as they did
    assert settings.app_id == "main-app" and settings.api_rate_limit == 7


def test_apps_come_from_nested_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, SCHOOL)
    assert list(settings.app_profiles()) == ["default", "school"]
    school = settings.app_profile("School")  # names are case-insensitive, as storage profiles
    assert school.app_id == "school-app-id"
    assert school.customer_id == "school-customer"
    assert school.customer_secret.get_secret_value() == "school-customer-secret"
    assert school.api_rate_limit == 4
    assert school.ncs_secret is not None
    assert settings.app_profile("default").app_id == "demo-app"  # untouched


def test_an_app_rate_limit_defaults_to_the_services_ten() -> None:
    settings = Settings(apps={"b": {"app_id": "b", "customer_id": "c", "customer_secret": "s"}})
    assert settings.app_profile("b").api_rate_limit == 10
    assert settings.app_profile("b").ncs_secret is None


@pytest.mark.parametrize(
    ("env", "words"),
    [
        (
            {"CLOUDREC_APPS__X__APP_ID": "x", "CLOUDREC_APPS__X__CUSTOMER_ID": "c"},
            "customer_secret",
        ),
        (
            {"CLOUDREC_APPS__X__CUSTOMER_ID": "c", "CLOUDREC_APPS__X__CUSTOMER_SECRET": "s"},
            "app_id",
        ),
        ({**SCHOOL, "CLOUDREC_APPS__SCHOOL__API_RATE_LIMIT": "0"}, "api_rate_limit"),
        ({**SCHOOL, "CLOUDREC_APPS__SCHOOL__CUSTOMER_SECRET": ""}, "customer_secret"),
        ({**SCHOOL, "CLOUDREC_APPS__SCHOOL__REGION": "x"}, "region"),
    ],
)
def test_a_bad_app_profile_is_refused_naming_the_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        settings_from(monkeypatch, env)
    text = str(caught.value)
    assert "apps" in text and words in text
    assert "school-customer-secret" not in text  # a refused value is never echoed


def test_the_default_app_cannot_be_given_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="CLOUDREC_APP_ID"):
        settings_from(
            monkeypatch,
            {
                "CLOUDREC_APPS__DEFAULT__APP_ID": "x",
                "CLOUDREC_APPS__DEFAULT__CUSTOMER_ID": "c",
                "CLOUDREC_APPS__DEFAULT__CUSTOMER_SECRET": "s",
            },
        )


def test_one_app_id_is_configured_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two profiles of one App ID would each spend its one budget as if it were theirs.
    with pytest.raises(ValidationError, match=r"apps\.school\.app_id.*'default'"):
        settings_from(monkeypatch, {**SCHOOL, "CLOUDREC_APPS__SCHOOL__APP_ID": "demo-app"})


def test_an_app_name_is_a_plain_word() -> None:
    with pytest.raises(ValidationError, match="app name"):
        Settings(apps={"a b": {"app_id": "x", "customer_id": "c", "customer_secret": "s"}})


def test_every_apps_secrets_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from(monkeypatch, {**SCHOOL, "CLOUDREC_NCS_SECRET": "main-ncs-secret"})
    secrets = settings_secrets(settings)
    for secret in ("school-customer-secret", "school-ncs-secret", "main-ncs-secret", "demo-secret"):
        assert secret in secrets
    shown = repr(settings) + str(settings) + repr(settings.app_profiles())
    assert "school-customer-secret" not in shown and "school-ncs-secret" not in shown
