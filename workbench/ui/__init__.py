"""The gradio app: one module per tab, wired to `workbench.app_service.WorkbenchService` (which holds the logic)."""

from workbench.ui.app import build_app, launch_kwargs

__all__ = ["build_app", "launch_kwargs"]
