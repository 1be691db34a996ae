"""Generated protobuf and gRPC code for the Open Inference Protocol (see grpc_predict_v2.proto)."""
