"""Which packages are test or development tools: they go to test.in / dev.in, never to the servers.

Names are compared in their PEP 503 form. The lists hold the tools people actually freeze into a
project's requirements.txt; the output names every one moved, so the user can move it back.
"""

from __future__ import annotations

from deploy.lock.reqfile import canonical

_TEST = {"pytest", "coverage", "tox", "nox", "hypothesis", "mock", "responses", "freezegun", "factory-boy",
         "faker", "webtest", "requests-mock", "respx", "time-machine", "nose", "nose2", "testfixtures", "behave",
         "moto", "vcrpy", "pytest-cov", "syrupy", "pyfakefs"}
_TEST_PREFIXES = ("pytest-", "flake8-", "tox-", "nox-", "coverage-")
_DEV = {"ruff", "flake8", "black", "isort", "mypy", "pylint", "pyright", "pre-commit", "ipython", "ipdb", "pdbpp",
        "bandit", "pip-tools", "twine", "build", "sphinx", "mkdocs", "mkdocs-material", "pip-audit", "invoke",
        "autopep8", "yapf", "pycodestyle", "pyflakes", "pydocstyle", "codespell", "bump2version", "bumpver",
        "pyupgrade", "vulture", "radon", "safety", "jupyter", "notebook", "jupyterlab", "types-setuptools",
        "django-debug-toolbar", "debugpy", "watchdog", "pinship"}
_DEV_PREFIXES = ("types-", "sphinx-", "sphinxcontrib-", "mkdocs-", "mypy-", "pylint-", "flake8-")
# pip freeze --all lists the installers themselves: no layer needs them unless the app imports them.
INSTALLERS = {"pip", "setuptools", "wheel", "distribute"}


def layer_of(name: str) -> str | None:
    """"test" or "dev" for a known tool, None for anything else (an application dependency)."""
    key = canonical(name)
    if key in _TEST or key.startswith(_TEST_PREFIXES[:1]):
        return "test"
    if key in _DEV or key.endswith("-stubs") or key.startswith(_DEV_PREFIXES):
        return "dev"
    if key.startswith(_TEST_PREFIXES):
        return "test"
    return None
