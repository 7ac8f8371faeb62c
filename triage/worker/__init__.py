"""Background work: the worker loop, its tasks declared as data, wake-ups and queued jobs."""
