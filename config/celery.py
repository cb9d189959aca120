"""The Celery app: its settings come from Django's (the CELERY_* names in config/settings.py)."""

import logging
import logging.config
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tollhouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _logging_as_django(loglevel: Any = None, **kwargs: Any) -> None:
    """The worker and beat log as the gateway does (config/logs.py: JSON lines in production), not
    in Celery's own format; `--loglevel` still sets the level, as Celery's own setup would."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    if loglevel:
        logging.getLogger().setLevel(loglevel)


class VarDirScheduler(PersistentScheduler):
    """Celery's file-backed beat scheduler, creating the schedule file's directory (TOLLHOUSE_VAR_DIR,
    see CELERY_BEAT_SCHEDULE_FILENAME) if it is missing: in production nothing else may have made it."""

    def setup_schedule(self) -> Any:
        Path(self.schedule_filename).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return super().setup_schedule()
