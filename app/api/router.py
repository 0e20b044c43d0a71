"""All routes, gathered."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.routes import classify, health, metrics, models

api_router = APIRouter()
for module in (classify, health, models, metrics):
    api_router.include_router(module.router)
