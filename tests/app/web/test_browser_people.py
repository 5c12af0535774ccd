"""The people page in a real browser (chromium), over the web app with an in-memory library: log in with the
token, add a person with a photo, rename, merge, remove a photo, delete (each confirmed), and name an unknown
face from the review queue. Names with markup stay text."""

from __future__ import annotations

import pytest

from app.settings import Settings
from app.types import FrameRef
from app.web.library_access import LibraryAccess
from app.web.server import WebServer
from tests.app.faults.servers import wait_for
from tests.app.web.conftest import FakeLibrary, jpeg, noisy_frame, one_face
from tests.app.web.test_browser import shot

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
TOKEN = "people-page-token"


@pytest.fixture
def server():
    settings = Settings(api_token=TOKEN)
    library = FakeLibrary()
    library.enrol_photos("Ada", [("ada1.jpg", jpeg((10, 200, 10))), ("ada2.jpg", jpeg((200, 10, 10)))])
    library.enrol_photos("Bob", [("bob.jpg", jpeg())])
    library.enrol_photos("<b>Eve</b>", [("eve.jpg", jpeg())])
    library.tracks.add((0, 7))
    srv = WebServer(settings, 0, "127.0.0.1", {0: "door"}, LibraryAccess(settings, library))
    srv.live.recent.observe(FrameRef(1, 0.0, 0, 1), noisy_frame(), one_face())
    try:
        yield srv, library
    finally:
        srv.close()


def by_name(library: FakeLibrary, name: str):
    return next((p for p in library.people_.values() if p.name == name), None)


def test_people_page_actions(server, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    srv, library = server
    base = f"http://127.0.0.1:{srv.port}"
    browser.get(base + "/people")
    assert "/login" in browser.current_url  # no token yet: the login form
    browser.find_element(By.ID, "token").send_keys(TOKEN + "\n")
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "article.person"), 10, "the people page")
    assert "<b>Eve</b>" in [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".person-name")]  # text, not markup

    def card(name: str):
        return next(c for c in browser.find_elements(By.CSS_SELECTOR, "article.person")
                    if c.get_attribute("data-name") == name)

    def mark() -> None:  # this document; after an action the page reloads itself into a new one
        browser.execute_script("window.__before = 1")

    def reloaded(check) -> None:
        wait_for(check, 10, "the change")
        wait_for(lambda: browser.execute_script("return window.__before === undefined && "
                                                "document.readyState === 'complete'"), 10, "the page again")
        mark()

    mark()

    # add a person with a photo
    photo = tmp_path / "grace.jpg"
    photo.write_bytes(jpeg((0, 0, 200)))
    form = browser.find_element(By.ID, "new-person")
    form.find_element(By.NAME, "name").send_keys("Grace")
    form.find_element(By.NAME, "photos").send_keys(str(photo))
    form.find_element(By.TAG_NAME, "button").click()
    reloaded(lambda: by_name(library, "Grace") and "Grace" in browser.page_source)
    # rename Bob (prompt)
    card("Bob").find_element(By.CSS_SELECTOR, ".rename").click()
    prompt = browser.switch_to.alert
    prompt.send_keys("Robert")
    prompt.accept()
    reloaded(lambda: by_name(library, "Robert") and "Robert" in browser.page_source)
    # remove one of Ada's photos (confirm)
    card("Ada").find_element(By.CSS_SELECTOR, ".remove-photo").click()
    browser.switch_to.alert.accept()
    reloaded(lambda: len(by_name(library, "Ada").photos) == 1)
    # merge Robert into Ada (confirm)
    Select(card("Robert").find_element(By.CSS_SELECTOR, ".merge-into")).select_by_visible_text("Ada")
    browser.switch_to.alert.accept()
    reloaded(lambda: by_name(library, "Robert") is None and len(by_name(library, "Ada").photos) == 2)
    # delete: cancelled first (nothing changes), then confirmed
    card("Grace").find_element(By.CSS_SELECTOR, ".delete").click()
    browser.switch_to.alert.dismiss()
    assert by_name(library, "Grace") is not None
    card("Grace").find_element(By.CSS_SELECTOR, ".delete").click()
    browser.switch_to.alert.accept()
    reloaded(lambda: by_name(library, "Grace") is None)
    # the review queue: name the unknown face of track 7
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#review .face.review input"), 10, "the review queue")
    review = browser.find_element(By.CSS_SELECTOR, "#review .face.review")
    review.find_element(By.TAG_NAME, "input").send_keys("Hopper")
    review.find_element(By.XPATH, ".//button[text()='Name']").click()
    reloaded(lambda: by_name(library, "Hopper") is not None)
    assert library.calls[-1][:4] == ("enrol_track", 0, 7, "Hopper")
    shot(browser, "7-people-actions.png")
