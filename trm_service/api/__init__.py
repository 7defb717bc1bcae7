"""The trm.v1 gRPC servicer, request validation and error mapping."""
