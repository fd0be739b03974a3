"""Fixtures of the flow tests: a landing store and snapshot per test, a CRM secret."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from flow_fixtures import Stores, build_landing


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    """A fresh landing store and snapshot for this test."""
    return build_landing(tmp_path)


@pytest.fixture
def crm_secret() -> str:
    """A signing secret, also set where the deliver task reads it."""
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    os.environ["FLEETCARE_PIPELINE__CRM_SECRET"] = secret
    return secret
