"""The web page's routes (placeholder until the pages land)."""

from __future__ import annotations

from fastapi import APIRouter

from pcc.api.app import Services
from pcc.controller.settings import Settings


def router(services: Services, settings: Settings) -> APIRouter:
    return APIRouter()
