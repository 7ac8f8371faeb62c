"""Background work: the loop, its tasks declared as data, wake-ups, queued jobs, the supervisor."""
