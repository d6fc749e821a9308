"""Builds and launches the ftui app."""

from ftui.ui import create_app, launch_kwargs

if __name__ == "__main__":
    create_app().queue().launch(**launch_kwargs())
