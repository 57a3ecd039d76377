"""`manage.py worker`: runs queued turns, webhook deliveries and schedules."""

from __future__ import annotations

import asyncio
import logging
from argparse import ArgumentParser
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.utils.crypto import get_random_string

from automation.worker import Worker


class Command(BaseCommand):
    help = (
        "Runs tasks of the Django Tasks queue (AGENTRY_TASK_BACKEND: the database "
        "or RQ) several at a time: turns in AGENTRY_TURN_EXECUTION=task mode, "
        "webhook deliveries. Also fires due schedules. Stop it with SIGTERM or "
        "Ctrl-C."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--concurrency",
            type=int,
            default=settings.AGENTRY_WORKER_CONCURRENCY,
            help="Tasks run at once (default: AGENTRY_WORKER_CONCURRENCY).",
        )
        parser.add_argument(
            "--queue-name",
            default="default",
            help="Queues to take tasks from, comma-separated (default: default).",
        )
        parser.add_argument(
            "--interval",
            type=float,
            default=0.1,
            help="Seconds between looks at an empty queue (default: 0.1).",
        )
        parser.add_argument(
            "--no-scheduler",
            action="store_false",
            dest="scheduler",
            help="Do not fire schedules from this worker.",
        )
        parser.add_argument(
            "--worker-id", default="", help="This worker's id (default: random)."
        )

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()

    def handle(self, *args: Any, **options: Any) -> None:
        logging.getLogger("automation").setLevel(
            logging.INFO if options["verbosity"] else logging.WARNING
        )
        worker = Worker(
            concurrency=options["concurrency"],
            queue_names=options["queue_name"].split(","),
            interval=max(0.01, options["interval"]),
            worker_id=options["worker_id"] or get_random_string(16),
            scheduler=options["scheduler"],
            on_ready=self._say,
        )
        asyncio.run(worker.run())
