"""Reading other tools' project formats (PEP 621, PEP 735, pip freeze, Poetry, uv) into layers.

Stdlib and `packaging` only: `python -m deploy init` uses it, never a deploy.
"""
