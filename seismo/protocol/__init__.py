"""Wire formats: CloudEvents, the inference protocols' payloads (KServe V1, Open Inference Protocol V2 and its binary tensors), event types, feedback, size and id limits."""
