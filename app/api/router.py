"""All routes, gathered."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routes import classify, health, metrics, models, v2

api_router = APIRouter()
for module in (classify, health, models, metrics, v2):
    api_router.include_router(module.router)
