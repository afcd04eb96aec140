"""The Windows service `mlflow-guard`: a thin pywin32 layer over guard.servicehost.

Everything here needs pywin32 (Windows only); `guard` itself never imports it, so the package
works without it and `guardctl install-service --windows` says what to install.
"""
