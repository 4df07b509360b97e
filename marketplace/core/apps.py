import importlib
import importlib.util
import sys

from django.apps import AppConfig

# Deep enough for Django, DRF and the platform's own code (none of it recurses deeply), shallow
# enough that the deepest C recursion it permits fits a 1 MiB thread stack. Python's default is
# 1,000; py_ecc (imported by web3) sets 100,000 and py-evm (eth-tester, tests only) 12,288.
SAFE_RECURSION_LIMIT = 3000

# Modules that raise the recursion limit as an import side effect. Imported here, once, so that
# the limit can be put back afterwards: a later `import web3` finds them in sys.modules and runs
# nothing again.
_LIMIT_RAISING_MODULES = ("py_ecc",)


def recursion_limit_restore() -> None:
    """Why: with a limit of 100,000 the C JSON decoder (and any C-level recursion) overflows a
    thread's stack on deeply nested input and the process dies with SIGSEGV instead of raising
    RecursionError. One gunicorn worker lost per request is a denial of service."""
    for name in _LIMIT_RAISING_MODULES:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)
    sys.setrecursionlimit(SAFE_RECURSION_LIMIT)


class CoreConfig(AppConfig):
    name = "marketplace.core"
    label = "core"

    def ready(self) -> None:
        # django.setup() runs this in every process: gunicorn workers, Celery, manage.py.
        recursion_limit_restore()
