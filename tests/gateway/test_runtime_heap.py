"""gateway/runtime.py `settle_heap`: a worker's start-up objects frozen out of the collector's walks,
and young objects collected less often."""

from __future__ import annotations

import gc

from gateway.runtime import GC_YOUNG_THRESHOLD, settle_heap


def test_a_started_worker_freezes_what_it_loaded_and_collects_young_objects_less_often():
    threshold = gc.get_threshold()
    gc.unfreeze()  # an ASGI start-up earlier in this test process may have frozen the heap already
    gc.set_threshold(700, 10, 10)  # the interpreter's defaults
    try:
        settle_heap()
        assert gc.get_freeze_count() > 10_000  # Django, the URLconf, the libraries
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, 10, 10)
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
