"""Adopting pinship in a project: reading other tools' formats (PEP 621, PEP 735, pip freeze, Poetry,
uv) into layers, vendoring pinship itself (itself), and the adopter's onboarding: the script init
writes (bootstrap, stdlib only) and `python -m deploy sync` (sync), which it hands over to.

Stdlib and `packaging` only: `python -m deploy init` uses it, never a deploy.
"""
