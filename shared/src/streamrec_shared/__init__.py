"""streamrec_shared: the contracts between streamrec's services (event types and topic records,
topics, settings, the Redis layout, the model artifact format and its reader, shared math and
runtime pieces). Developer tooling lives in ``streamrec_dev``, the client in
``streamrec_client``; see docs/architecture-contracts.md."""
