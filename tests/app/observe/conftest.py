"""The real mosquitto broker of the events tests (a scrape test runs with events held for it)."""

from tests.app.events.conftest import broker  # noqa: F401 - re-exported as a fixture here
