"""Accounts: password reset by e-mail and password change for everybody (Django's views,
our templates), and the admin at the path ADMIN_PATH names."""

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from django.test import Client
from django.utils import timezone

from tests.factories import UserFactory
from tests.helpers import browser, clean_env

ROOT = Path(__file__).resolve().parent.parent
NEW_PASSWORD = "a-fresh-Passphrase-2026"


def reset_link(message) -> str:
    [link] = re.findall(r"https?://testserver(/password/reset/\S+/)", message.body)
    return link


def test_password_reset_by_e_mail_sets_a_new_password(rep):
    client = Client()
    assert "Forgot your password?" in client.get("/login/").content.decode()
    page = client.get("/password/reset/")
    assert page.status_code == 200
    assert "Reset your password" in page.content.decode()

    response = client.post("/password/reset/", {"email": "rep@leadflow.test"})
    assert response.status_code == 302
    assert response["Location"] == "/password/reset/sent/"
    assert "Check your e-mail" in client.get(response["Location"]).content.decode()
    [message] = mail.outbox
    assert message.to == ["rep@leadflow.test"]
    assert message.subject == "Reset your LeadFlow password"
    assert "Hello rep," in message.body

    form = client.get(reset_link(message), follow=True)
    assert "Choose a new password" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert "Your password is set" in client.get(done["Location"]).content.decode()

    assert Client().post("/login/", {"username": "rep", "password": NEW_PASSWORD}).status_code == 302
    # The link worked once.
    assert "This link no longer works" in client.get(reset_link(message), follow=True).content.decode()


def test_password_reset_says_the_same_for_an_unknown_address(db):
    response = Client().post("/password/reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert response["Location"] == "/password/reset/sent/"
    assert mail.outbox == []


def test_password_reset_lifts_the_accounts_lockout(settings, rep):
    settings.AXES_FAILURE_LIMIT = 2
    for _ in range(2):
        Client(REMOTE_ADDR="203.0.113.7").post("/login/", {"username": "rep", "password": "wrong"})
    locked = Client(REMOTE_ADDR="198.51.100.7").post("/login/", {"username": "rep", "password": NEW_PASSWORD})
    assert locked.status_code == 429
    assert "Reset it by e-mail" in locked.content.decode()

    client = Client(REMOTE_ADDR="198.51.100.7")
    client.post("/password/reset/", {"email": "rep@leadflow.test"})
    form = client.get(reset_link(mail.outbox[0]), follow=True)
    client.post(form.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})

    response = Client(REMOTE_ADDR="198.51.100.7").post("/login/", {"username": "rep", "password": NEW_PASSWORD})
    assert response.status_code == 302


@pytest.mark.parametrize("role", ["marketer", "rep", "admin", "outsider"])
def test_every_user_may_change_their_password(role, request):
    user = request.getfixturevalue(role)
    client = browser(user)
    page = client.get("/password/change/")
    assert page.status_code == 200
    assert "Change your password" in page.content.decode()
    wrong = client.post(
        "/password/change/",
        {"old_password": "wrong", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert wrong.status_code == 200
    assert "Your old password was entered incorrectly" in wrong.content.decode()

    response = client.post(
        "/password/change/",
        {"old_password": "correct-horse-battery", "new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD},
    )
    assert response.status_code == 302
    assert response["Location"] == "/password/change/done/"
    assert "Your password is changed" in client.get("/password/change/done/").content.decode()
    assert User.objects.get(pk=user.pk).check_password(NEW_PASSWORD)


def test_password_change_needs_a_login(db):
    response = Client().get("/password/change/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")


def test_an_expired_reset_link_is_refused(settings, rep):
    settings.PASSWORD_RESET_TIMEOUT = 3600
    client = Client()
    client.post("/password/reset/", {"email": "rep@leadflow.test"})
    with time_machine.travel(timezone.now() + timedelta(hours=2), tick=False):
        page = client.get(reset_link(mail.outbox[0]), follow=True)
    assert "This link no longer works" in page.content.decode()


def manage(*args, **env):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean_env(DEBUG="1", SQLITE_PATH="/nonexistent/never-opened.sqlite3", **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_admin_path_is_configurable():
    code = "from django.urls import reverse; print(reverse('admin:index'))"
    result = manage("shell", "--no-imports", "-c", code, ADMIN_PATH="backoffice-7f3a/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "/backoffice-7f3a/"


def test_a_malformed_admin_path_fails_loudly():
    result = manage("check", ADMIN_PATH="backoffice")
    assert result.returncode != 0
    assert "ADMIN_PATH='backoffice' must be a path ending with a slash" in result.stderr


def test_staff_reach_the_admin_at_its_default_path(db):
    staff = UserFactory.create(username="boss", is_staff=True, is_superuser=True)
    assert browser(staff).get("/admin/").status_code == 200
