"""The broker's parts without HTTP: the journal, the trigger list and the dispatcher (seismo.services.broker serves them)."""
