"""Model serving: runtimes, batching predictor, the data plane REST and gRPC call, and the event sender."""
