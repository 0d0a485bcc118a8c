"""The AIRCTRL HTTP service: FastAPI app, routes, auth, schemas, live stream."""

from airctrl.api.app import create_app, create_app_from_env

__all__ = ["create_app", "create_app_from_env"]
