"""Wire formats: CloudEvents, the inference protocols' payloads, event types, limits, and the event poster."""
