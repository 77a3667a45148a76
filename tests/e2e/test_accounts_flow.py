"""End to end, in a real browser: a person who forgot their password resets it by e-mail
and logs in with the new one; one who keeps guessing is locked out with a clear page."""

import re

import pytest
from django.core import mail
from playwright.sync_api import Page, expect

from tests.e2e.conftest import assert_no_console_errors, log_in, shoot

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

NEW_PASSWORD = "a-fresh-Passphrase-2026"


def test_a_rep_who_forgot_their_password_resets_it_by_e_mail(page: Page, rep):
    page.goto("/login/")
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Reset your password")).to_be_visible()
    page.get_by_label("Email").fill("rep@leadflow.test")
    shoot(page, "password-reset")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", name="Check your e-mail")).to_be_visible()

    [message] = mail.outbox
    link = re.search(r"https?://[^/\s]+(/password/reset/\S+/)", str(message.body))
    assert link is not None, message.body
    page.goto(link.group(1))
    expect(page.get_by_role("heading", name="Choose a new password")).to_be_visible()
    page.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("New password confirmation").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Set my password").click()
    expect(page.get_by_role("heading", name="Your password is set")).to_be_visible()

    log_in(page, "rep", NEW_PASSWORD)
    expect(page.get_by_role("link", name="Password")).to_be_visible()
    assert_no_console_errors(page)


def test_a_guesser_is_locked_out_with_a_page_that_says_what_to_do(page: Page, rep, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for _ in range(3):
        page.goto("/login/")
        page.get_by_label("Username").fill("rep")
        page.get_by_label("Password").fill("wrong")
        page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Too many failed log-ins")).to_be_visible()
    expect(page.get_by_role("link", name="Reset it by e-mail")).to_be_visible()
    shoot(page, "locked-out")
