"""A Django web app's dependency tree, as benchmarks/lock.py serves it from a local index.

The names and edges are those of a real Django + DRF + Celery app and its test and dev tools (read
from their published metadata, simplified: markers for other Pythons and platforms left out, and
version ranges loosened to the two releases each package gets here, 1.0 and 1.1). Packages that
ship only an sdist in this tree are built from source when locked, as a resolver must; a few newest
releases need a Python newer than any, as Django 5 did for 3.8 users, so the lock must skip them.
"""

from __future__ import annotations

# name -> requirements of each release
REQUIRES: dict[str, list[str]] = {
    # base: the app itself
    "django": ["asgiref>=1.0", "sqlparse>=1.0"],
    "asgiref": [],
    "sqlparse": [],
    "djangorestframework": ["django>=1.0"],
    "psycopg": ["typing-extensions>=1.0"],
    "typing-extensions": [],
    "celery": ["billiard>=1.0", "kombu>=1.0", "vine>=1.0", "click>=1.0", "click-didyoumean>=1.0",
               "click-repl>=1.0", "click-plugins>=1.0", "python-dateutil>=1.0", "tzdata>=1.0"],
    "billiard": [],
    "kombu": ["amqp>=1.0", "vine", "tzdata"],
    "amqp": ["vine>=1.0"],
    "vine": [],
    "click": [],
    "click-didyoumean": ["click>=1.0"],
    "click-repl": ["click>=1.0", "prompt-toolkit>=1.0"],
    "click-plugins": ["click>=1.0"],
    "prompt-toolkit": ["wcwidth"],
    "wcwidth": [],
    "python-dateutil": ["six>=1.0"],
    "six": [],
    "tzdata": [],
    "redis": [],
    "requests": ["charset-normalizer>=1.0,<3", "idna>=1.0,<3", "urllib3>=1.0,<3", "certifi>=1.0"],
    "charset-normalizer": [],
    "idna": [],
    "urllib3": [],
    "certifi": [],
    "pillow": [],
    "django-environ": [],
    "drf-spectacular": ["django>=1.0", "djangorestframework>=1.0", "uritemplate>=1.0", "pyyaml>=1.0",
                        "jsonschema>=1.0", "inflection>=1.0"],
    "uritemplate": [],
    "pyyaml": [],
    "inflection": [],
    "jsonschema": ["attrs>=1.0", "jsonschema-specifications>=1.0", "referencing>=1.0", "rpds-py>=1.0"],
    "jsonschema-specifications": ["referencing>=1.0"],
    "referencing": ["attrs>=1.0", "rpds-py>=1.0"],
    "attrs": [],
    "rpds-py": [],
    "django-cors-headers": ["asgiref>=1.0", "django>=1.0"],
    "django-filter": ["django>=1.0"],
    "structlog": [],
    "django-compressor": ["django-appconf>=1.0", "rcssmin==1.1", "rjsmin==1.1"],
    "django-appconf": ["django"],
    "rcssmin": [],
    "rjsmin": [],
    # prod: what the servers run besides
    "gunicorn": ["packaging"],
    "packaging": [],
    "whitenoise": [],
    "sentry-sdk": ["urllib3>=1.0", "certifi"],
    "boto3": ["botocore>=1.0,<2", "jmespath>=1.0,<2", "s3transfer>=1.0,<2"],
    "botocore": ["jmespath>=1.0,<2", "python-dateutil>=1.0,<3", "urllib3>=1.0"],
    "jmespath": [],
    "s3transfer": ["botocore>=1.0,<2"],
    "django-storages": ["django>=1.0"],
    # test
    "pytest": ["iniconfig", "packaging", "pluggy>=1.0,<2"],
    "iniconfig": [],
    "pluggy": [],
    "pytest-django": ["pytest>=1.0"],
    "pytest-cov": ["pytest>=1.0", "coverage>=1.0"],
    "coverage": [],
    "pytest-xdist": ["execnet>=1.0", "pytest>=1.0"],
    "execnet": [],
    "factory-boy": ["faker>=1.0"],
    "faker": ["python-dateutil>=1.0"],
    "freezegun": ["python-dateutil>=1.0"],
    "responses": ["requests>=1.0", "urllib3>=1.0", "pyyaml"],
    "model-bakery": ["django>=1.0"],
    "coveralls": ["coverage>=1.0,<2", "docopt>=1.0", "requests>=1.0"],
    "docopt": [],
    # dev
    "ruff": [],
    "mypy": ["typing-extensions>=1.0", "mypy-extensions>=1.0", "pathspec>=1.0"],
    "mypy-extensions": [],
    "pathspec": [],
    "django-stubs": ["django", "django-stubs-ext>=1.0", "types-pyyaml", "typing-extensions>=1.0"],
    "django-stubs-ext": ["django", "typing-extensions"],
    "djangorestframework-stubs": ["django-stubs>=1.0", "requests>=1.0", "types-requests>=1.0", "types-pyyaml",
                                  "typing-extensions>=1.0"],
    "types-requests": ["urllib3>=1.0"],
    "types-pyyaml": [],
    "pre-commit": ["cfgv>=1.0", "identify>=1.0", "nodeenv>=1.0", "pyyaml>=1.0", "virtualenv>=1.0"],
    "cfgv": [],
    "identify": [],
    "nodeenv": [],
    "virtualenv": ["distlib>=1.0,<2", "filelock>=1.0,<2", "platformdirs>=1.0,<2"],
    "distlib": [],
    "filelock": [],
    "platformdirs": [],
    "ipython": ["decorator", "jedi>=1.0", "matplotlib-inline", "pexpect>1.0", "prompt-toolkit>=1.0,<2",
                "pygments>=1.0", "stack-data", "traitlets>=1.0"],
    "decorator": [],
    "jedi": ["parso>=1.0,<2"],
    "parso": [],
    "matplotlib-inline": ["traitlets"],
    "traitlets": [],
    "pexpect": ["ptyprocess>=1.0"],
    "ptyprocess": [],
    "pygments": [],
    "stack-data": ["executing>=1.0", "asttokens>=1.0", "pure-eval"],
    "executing": [],
    "asttokens": [],
    "pure-eval": [],
    "django-debug-toolbar": ["django>=1.0", "sqlparse>=1.0"],
    # not in any layer: what the benchmark adds (an email backend for the deploy layer)
    "django-anymail": ["django>=1.0", "requests>=1.0", "urllib3"],
}
# Released only as an sdist (C extensions whose wheels a resolver cannot use here, and docopt,
# which never had a wheel): their metadata comes from building them.
SDIST_ONLY = {"rcssmin", "rjsmin", "docopt", "django-environ", "billiard"}
# Whose 1.2 needs a Python no machine has: the lock must stay at 1.1.
TOO_NEW = {"django", "celery", "pytest"}
LAYERS = {
    "base.in": "django\ndjangorestframework\npsycopg\ncelery\nredis\nrequests\npillow\ndjango-environ\n"
    "drf-spectacular\ndjango-cors-headers\ndjango-filter\nstructlog\ndjango-compressor\n",
    "prod.in": "-r base.in\ngunicorn\nwhitenoise\nsentry-sdk\nboto3\ndjango-storages\n",
    "test.in": "-r prod.in\npytest\npytest-django\npytest-cov\npytest-xdist\nfactory-boy\nfreezegun\nresponses\n"
    "model-bakery\ncoveralls\n",
    "dev.in": "-r test.in\nruff\nmypy\ndjango-stubs\ndjangorestframework-stubs\ntypes-requests\ntypes-pyyaml\n"
    "pre-commit\nipython\ndjango-debug-toolbar\n",
}
ADD = ("django-anymail", "prod")  # `add` writes this into that layer
UPGRADE = "sentry-sdk"  # locked at 1.0 before the upgrade is timed, 1.1 after
